"""The on-demand teacher hook: a budget spent where the student is unsure. The teacher is
left alone between consultations; at a step where rows consult it (any on-demand strategy's),
it first reads what each of them wrote since it last read that row, in one call for all of
them (`extend_many`: each row its own tokens, in place, no other row touched), then the
strategies pick from its answer. Rows that leave (budget spent, steps over, finished) are
dropped from their session at its next catch-up."""
from __future__ import annotations

import torch

from pipeline.decoding.generation import Generation
from pipeline.decoding.teacher_next import TeacherNext
from pipeline.decoding.teacher_rows import TeacherRows
from pipeline.engine.interface import StepEngine


class OnDemand:
    def __init__(self, teacher: StepEngine, groups: list[TeacherRows], gens: list[Generation], alphas: torch.Tensor):
        self.teacher, self.groups, self.gens, self.alphas = teacher, groups, gens, alphas

    @property
    def open(self) -> bool:
        return bool(self.groups)

    def with_teacher(self) -> set[int]:
        return {b for g in self.groups for b in g.rows}

    def apply(self, t: int, p: torch.Tensor, active: list[int], tokens: torch.Tensor) -> None:
        """Step t's tokens of the rows whose strategy consults the teacher there."""
        at = {b: i for i, b in enumerate(active)}
        asked = []
        for g in self.groups:
            pos = [at[b] for b in g.rows]
            wanted = g.strategy.consults(t, p[pos], self.alphas[g.rows].to(p.device), g.spent(self.gens, g.rows, p.device))
            rows = [b for b, ask in zip(g.rows, wanted.tolist()) if ask]
            if rows:
                asked.append((g, rows))
        if not asked:
            return
        for (g, rows), teacher in zip(asked, self._answers(t, asked)):
            g.pick(t, p, at, rows, teacher, self.alphas, self.gens, tokens, on_demand=True)

    def _answers(self, t: int, asked: list[tuple[TeacherRows, list[int]]]) -> list[TeacherNext]:
        """The teacher's distribution for each group's asked rows at step t: its prefill's at
        the first step, else after one catch-up call for all of them."""
        if t == 0:
            return [g.next.subset([g.slot[b] for b in rows]) for g, rows in asked]
        calls = []
        for g, rows in asked:
            index = {b: i for i, b in enumerate(g.rows)}
            feed = [[] for _ in g.rows]
            for b in rows:
                feed[index[b]] = self.gens[b].token_ids[g.fed[b]:]
                self.gens[b].read_by_teacher(len(feed[index[b]]))
                g.fed[b] = len(self.gens[b].token_ids)
            drop = [g.slot[b] for b in g.rows] if len(g.rows) < len(g.slot) else None
            calls.append((g.session, feed, drop))
            g.slot = index
        outs = self.teacher.extend_many(calls)
        return [TeacherNext(self.teacher, g.session, out, rows=[g.slot[b] for b in rows]) for (g, rows), out in zip(asked, outs)]

    def send(self, t: int, still: list[int], token_of: dict[int, int]) -> list[int]:
        """Note the rows that may still consult (the session drops the others at its next
        catch-up); the rows the student still steps (all of `still`)."""
        alive, kept = set(still), []
        for g in self.groups:
            g.rows = g.staying(t, alive, self.gens)
            if g.rows:
                kept.append(g)
            else:
                self.teacher.close(g.session)
        self.groups = kept
        return still

    def receive(self) -> None:
        pass

    def close(self) -> None:
        for g in self.groups:
            self.teacher.close(g.session)
        self.groups = []
