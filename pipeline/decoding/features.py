"""First-token statistics of an example: what the α-label rows record and what an
α-predictor reads online, computed by this one function in both places."""
from __future__ import annotations

import torch

from pipeline.decoding.distributions import entropy, jsd, kl

TOPK = 5  # width of the top-k probability features
STUDENT_STATS = ("student_entropy", "student_top1_prob", "student_topk_probs")  # need no teacher call
TEACHER_STATS = ("teacher_entropy", "teacher_top1_prob", "kl_teacher_student", "jsd", "argmax_agree", "teacher_topk_probs")


def first_token_stats(p_s: torch.Tensor, p_t: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-row statistics of the student's (and, given, the teacher's) first-token
    distributions [B, V]: a tensor [B] (or [B, TOPK] for the top-k probabilities, largest
    first) per name of STUDENT_STATS (+ TEACHER_STATS)."""
    k = min(TOPK, p_s.shape[-1])
    stats = {"student_entropy": entropy(p_s), "student_top1_prob": p_s.max(dim=-1).values,
             "student_topk_probs": p_s.topk(k, dim=-1).values}
    if p_t is not None:
        stats.update({
            "teacher_entropy": entropy(p_t),
            "teacher_top1_prob": p_t.max(dim=-1).values,
            "kl_teacher_student": kl(p_t, p_s),
            "jsd": jsd(p_t, p_s),
            "argmax_agree": p_s.argmax(dim=-1) == p_t.argmax(dim=-1),
            "teacher_topk_probs": p_t.topk(k, dim=-1).values,
        })
    return stats


def stats_rows(stats: dict[str, torch.Tensor]) -> list[dict]:
    """The statistics as one dict of Python values per row."""
    columns = {k: v.tolist() for k, v in stats.items()}
    return [{k: columns[k][i] for k in columns} for i in range(len(next(iter(columns.values()))))]
