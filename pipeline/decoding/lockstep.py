"""The lockstep teacher hook: first-N, entropy gates, SWITCH (and a predicted α's first
tokens). The teacher is fed every token of its rows until their steps are over: one call a
step for the rows of every such strategy (`extend_many`, each strategy's session with its own
transport), sent before the student's own step and received after it, so that both models
compute at once."""
from __future__ import annotations

import torch

from pipeline.decoding.generation import Generation
from pipeline.decoding.teacher_next import TeacherNext
from pipeline.decoding.teacher_rows import TeacherRows
from pipeline.engine.interface import StepEngine


class Lockstep:
    def __init__(self, teacher: StepEngine, groups: list[TeacherRows], gens: list[Generation], alphas: torch.Tensor):
        self.teacher, self.groups, self.gens, self.alphas = teacher, groups, gens, alphas
        self._pending = None

    @property
    def open(self) -> bool:
        return bool(self.groups)

    def with_teacher(self) -> set[int]:
        return {b for g in self.groups for b in g.rows}

    def apply(self, t: int, p: torch.Tensor, active: list[int], tokens: torch.Tensor) -> None:
        """Step t's tokens of every row with the teacher (its distribution arrived with the last step)."""
        at = {b: i for i, b in enumerate(active)}
        for g in self.groups:
            g.pick(t, p, at, g.rows, g.next, self.alphas, self.gens, tokens, on_demand=False)

    def send(self, t: int, still: list[int], token_of: dict[int, int]) -> list[int]:
        """Feed the teacher each staying row's token t (one call for every strategy), and leave
        it where no row of a strategy stays; the rows the student still steps (all of `still`)."""
        alive, calls, kept = set(still), [], []
        for g in self.groups:
            staying = g.staying(t, alive, self.gens)
            if not staying:
                self.teacher.close(g.session)
                continue
            index = {b: i for i, b in enumerate(g.rows)}
            drop = [index[b] for b in staying] if len(staying) < len(g.rows) else None
            calls.append((g.session, [[token_of[b]] for b in staying], drop))
            for b in staying:
                self.gens[b].read_by_teacher(1)
            g.rows = staying
            kept.append(g)
        self.groups = kept
        self._pending = self.teacher.extend_many_async(calls) if calls else None
        return still

    def receive(self) -> None:
        if self._pending is not None:
            for g, out in zip(self.groups, self._pending.result()):
                g.next = TeacherNext(self.teacher, g.session, out)
            self._pending = None

    def close(self) -> None:
        for g in self.groups:
            self.teacher.close(g.session)
        self.groups = []
