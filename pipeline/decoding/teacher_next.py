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
from pipeline.engine.interface import NextToken, PendingNext, StepEngine


def ask_for(engine: StepEngine, session: str, top_k: int | None = None, full_dtype: str | None = None) -> None:
    """What the teacher's next answers for `session` should carry, where an adapter chooses
    (a remote teacher: `RemoteEngine.transport`); an in-process engine always has full rows."""
    transport = getattr(engine, "transport", None)
    if transport is not None:
        transport(session, top_k, full_dtype)


class TeacherNext:
    """The teacher's distribution for the rows of one step (in the order of the caller's
    rows). It may arrive later (`out` a `PendingNext`, waited for where first read), so that
    a teacher's prefill runs while the student already decodes."""

    def __init__(self, engine: StepEngine, session: str, out: NextToken | PendingNext, rows: list[int] | None = None):
        self.engine, self.session = engine, session
        self._out, self._pending = (out, None) if isinstance(out, NextToken) else (None, out)
        self.rows = rows  # the session's row of each of these rows (None: the same index)
        self._probs: torch.Tensor | None = None  # full rows, once computed or fetched for every row
        self.fetched_rows = 0  # rows whose full distribution had to be fetched

    @property
    def out(self) -> NextToken:
        if self._out is None:
            self._out, self._pending = self._pending.result(), None
        return self._out

    @property
    def top_probs(self) -> torch.Tensor | None:
        return self.out.top_probs

    @property
    def top_ids(self) -> torch.Tensor | None:
        return self.out.top_ids

    def full(self, rows: list[int] | None = None) -> torch.Tensor:
        """Full probabilities of `rows` (all rows when None), fetched from the engine if it sent the top-k only."""
        if self._probs is None and (self.out.logits is not None or self.out.full is not None):
            self._probs = self.out.probs
        if self._probs is not None:
            return self._probs if rows is None else self._probs[rows]
        if rows is None:  # every row: kept, a strategy may read them twice
            self._probs = self.full(list(range(len(self.top_probs))))
            return self._probs
        self.fetched_rows += len(rows)
        return self.engine.full_probs(self.session, rows if self.rows is None else [self.rows[i] for i in rows])

    def argmax(self) -> torch.Tensor:
        """Each row's most likely token (lowest id on ties), exactly: where the rows crossed
        the wire as bfloat16, the engine sent the float32 argmax beside them."""
        if self.out.full is not None and self.top_ids is not None:
            return self.top_ids[:, 0].long()
        return self.full().argmax(dim=-1)

    def select(self, keep: list[int], session: str | None = None) -> "TeacherNext":
        """The same distribution for a subset of rows, after the engine's session was forked to
        them (or cloned to `session`); still to arrive if this one is."""
        kept = TeacherNext(self.engine, session or self.session, _Picked(self, keep))
        kept.fetched_rows = self.fetched_rows
        return kept

    def subset(self, keep: list[int]) -> "TeacherNext":
        """The same distribution for a subset of rows, the engine's session left as it is."""
        kept = self.select(keep)
        kept.rows = [i if self.rows is None else self.rows[i] for i in keep]
        return kept


class _Picked:
    """Some rows of a distribution that may still be on its way."""

    def __init__(self, source: TeacherNext, keep: list[int]):
        self.source, self.keep = source, keep

    def result(self) -> NextToken:
        out = self.source.out
        pick = [None if x is None else x[self.keep] for x in (out.logits, out.top_probs, out.top_ids, out.full)]
        return NextToken(logits=pick[0], top_probs=pick[1], top_ids=pick[2], full=pick[3])


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
