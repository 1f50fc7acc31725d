"""CoT-decoding (Wang and Zhou, 2024): branch on the k most likely first tokens, continue each
branch greedily, keep the path whose answer is decoded most confidently.

The α tree's branching idea, with one prefill for the batch: the student's session is forked
so each row becomes k rows (repeated row indices), and all B·k branches continue in the one
batched greedy loop (`decode_steps`) while a hook records each step's top-1 − top-2
probability gap per row. A path's confidence is the paper's Δ: the mean gap over the tokens
of its final answer. With α ≠ 0 the branching tokens are the top-k of the mixed first-token
distribution p_s + α(p_t − p_s); everything after them is the student's.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pipeline.decoding.distributions import mix
from pipeline.engine.interface import Completion, StepEngine
from pipeline.engine.steps import decode_steps, record_token
from pipeline.engine.stop import StopRule

AnswerSpan = Callable[[str], "tuple[int, int] | None"]  # text -> [start, end) of its final answer, or None


@dataclass
class Branch(Completion):
    """One path of a row: its first token's rank among the top-k (0: the greedy token) and the
    top-1 − top-2 gap of the distribution each of its tokens was chosen from."""

    rank: int = 0
    gaps: list[float] = field(default_factory=list)
    confidence: float = 0.0


def first_distribution(p_student: torch.Tensor, p_teacher: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """What the branching token is chosen from: p_s, or the mixed distribution (full rows: its
    top-k order and its gap need every token's exact value)."""
    return p_student if p_teacher is None or alpha == 0 else mix(p_student, p_teacher.to(p_student.device), alpha)


def top_tokens(p: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best tokens per row [B, k], best first, and the row's top-1 − top-2 gap [B].
    A stable sort breaks ties by the lowest id, as argmax does: rank 0 is the greedy token."""
    values, ids = torch.sort(p, dim=-1, descending=True, stable=True)
    return ids[:, :k], values[:, 0] - values[:, 1]


class GapRecorder:
    """A `StepHook` that changes no token: it appends each step's top-1 − top-2 gap to its row."""

    def __init__(self, branches: list[Branch]):
        self.branches = branches

    def apply(self, t: int, p: torch.Tensor, active: list[int], tokens: torch.Tensor) -> None:
        top = p.topk(2, dim=-1).values
        for r, gap in zip(active, (top[:, 0] - top[:, 1]).tolist()):
            self.branches[r].gaps.append(gap)

    def send(self, t: int, still: list[int], token_of: dict[int, int]) -> list[int]:
        return still

    def receive(self) -> None:
        pass


def decode_branches(engine: StepEngine, session: str, p_first: torch.Tensor, k: int, stop: StopRule,
                    tokenizer) -> list[list[Branch]]:
    """The k branches of every row of an open, prefilled session whose first-token
    distribution is `p_first` [B, V], continued greedily in one batch; the session ends with
    one row per live branch."""
    k = min(k, p_first.shape[-1])
    tokens, gap = top_tokens(p_first, k)
    branches = [[Branch(rank=j, gaps=[g]) for j in range(k)] for g in gap.tolist()]
    flat = [b for row in branches for b in row]
    live, parents, fed = [], [], []
    for i, (branch, token) in enumerate(zip(flat, tokens.flatten().tolist())):
        if not record_token(branch, token, stop, tokenizer):
            live.append(i)
            parents.append(i // k)
            fed.append(token)
    if live:
        p = engine.step(session, torch.tensor(fed), rows=parents).probs  # the fork: row r repeated once per live branch
        for i in live:
            flat[i].tokens_processed += 1
        decode_steps(engine, session, p, flat, live, stop, tokenizer, hook=GapRecorder(flat))
    return branches


def token_range(tokenizer, token_ids: list[int], start: int, end: int) -> tuple[int, int]:
    """The tokens [first, last] whose text overlaps characters [start, end) of the row's text,
    by decoding prefixes (binary search: prefix lengths only grow)."""
    def ends_after(c: int) -> int:  # the first token whose prefix text reaches past character c
        lo, hi = 0, len(token_ids) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if len(tokenizer.decode(token_ids[: mid + 1], skip_special_tokens=True)) > c:
                hi = mid
            else:
                lo = mid + 1
        return lo

    return ends_after(start), ends_after(max(start, end - 1))


def answer_confidence(branch: Branch, text: str, answer_span: AnswerSpan, tokenizer) -> float:
    """Mean top-1 − top-2 gap over the tokens of the path's final answer."""
    span = answer_span(text)
    if span is None:
        # no answer to measure: the mean over every generated token still ranks the path
        # (and a path without an answer is rarely the confident one)
        return sum(branch.gaps) / len(branch.gaps)
    first, last = token_range(tokenizer, branch.token_ids, *span)
    picked = branch.gaps[first : last + 1]
    return sum(picked) / len(picked)


def most_confident(branches: list[Branch], texts: list[str], answer_span: AnswerSpan, tokenizer) -> Branch:
    """The branch with the highest answer confidence (the best-ranked one on ties)."""
    for branch, text in zip(branches, texts):
        branch.confidence = answer_confidence(branch, text, answer_span, tokenizer)
    return max(branches, key=lambda b: b.confidence)  # max keeps the first of equals
