"""The teacher's next-token distribution as the decoder sees it: the top-k of each row,
and full rows only where they are needed.

A remote teacher sends each consulting row's k largest probabilities and their ids. The
mixed argmax p_s + α(p_t − p_s) is then certified from them (`certified_mix_argmax`); the
few rows the certificate cannot settle fetch their full row, so the tokens are exactly
those of full-row mixing. An in-process teacher hands over full rows, which are used as
they are.
"""
from __future__ import annotations

import torch

from pipeline.decoding.distributions import certified_mix_argmax, mix
from pipeline.engine.interface import NextToken, StepEngine


class TeacherNext:
    """The teacher's distribution for the rows of one step (in the order of the phase's rows)."""

    def __init__(self, engine: StepEngine, session: str, out: NextToken):
        self.engine, self.session = engine, session
        self._full = out.probs if out.logits is not None else None
        self.top_probs, self.top_ids = out.top_probs, out.top_ids
        self.fetched_rows = 0  # rows whose full distribution had to be fetched

    @property
    def rows(self) -> int:
        return len(self._full) if self._full is not None else len(self.top_probs)

    def full(self, rows: list[int] | None = None) -> torch.Tensor:
        """Full probabilities of `rows` (all rows when None), fetched from the engine if it sent the top-k only."""
        if self._full is not None:
            return self._full if rows is None else self._full[rows]
        rows = list(range(self.rows)) if rows is None else rows
        self.fetched_rows += len(rows)
        return self.engine.full_probs(self.session, rows)

    def select(self, keep: list[int]) -> "TeacherNext":
        """The same distribution for a subset of rows, after the engine's session was forked to them."""
        kept = TeacherNext.__new__(TeacherNext)
        kept.engine, kept.session, kept.fetched_rows = self.engine, self.session, self.fetched_rows
        kept._full = None if self._full is None else self._full[keep]
        kept.top_probs = None if self.top_probs is None else self.top_probs[keep]
        kept.top_ids = None if self.top_ids is None else self.top_ids[keep]
        return kept


def mixed_argmax(p_student: torch.Tensor, teacher: TeacherNext, alphas: torch.Tensor) -> torch.Tensor:
    """argmax of p_s + α(p_t − p_s) per row, exactly as over full rows (lowest id on ties)."""
    device = p_student.device
    if teacher.top_probs is None:
        return mix(p_student, teacher.full().to(device), alphas).argmax(dim=-1)
    tokens, certain = certified_mix_argmax(p_student, teacher.top_probs.to(device), teacher.top_ids.to(device).long(), alphas)
    unsure = (~certain).nonzero().flatten().tolist()
    if unsure:
        full = teacher.full(unsure).to(device)
        tokens[unsure] = mix(p_student[unsure], full, alphas[unsure]).argmax(dim=-1)
    return tokens
