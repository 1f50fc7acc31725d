"""The teacher's part of a decoding run, hooked into the student's step loop."""
from __future__ import annotations

import torch

from pipeline.decoding.generation import Consultation, Generation
from pipeline.decoding.strategies import Strategy
from pipeline.decoding.teacher_next import TeacherNext, ask_for
from pipeline.engine.interface import Prompt, StepEngine


class TeacherPhase:
    """The teacher's part of a decoding run, hooked into the step loop: which rows consult
    it, with which α, until which step.

    `apply` overwrites the tokens of consulting rows at step t. In lockstep (every plan but
    an on-demand one) `send` feeds the chosen tokens to the teacher's cache, one call per step
    per batch, sent before the student's own step and received after it, and drops rows and
    steps it is no longer needed for. On demand (`TeacherPlan.on_demand`) the teacher is left
    alone between consultations: at a step where the strategy consults some rows, `apply`
    first feeds the teacher what those rows wrote since it last read them (one catch-up call),
    then mixes. Between the calls the teacher's distribution is a `TeacherNext`: its top-k,
    and full rows only where a strategy needs them.
    """

    def __init__(self, strategy: Strategy, teacher: StepEngine, session: str, rows: list[int], gens: list[Generation],
                 top_k: int | None, reference: list[Generation | None] | None = None):
        self.strategy, self.teacher, self.session = strategy, teacher, session
        self.rows, self.gens = rows, gens
        # the student-greedy rows of the same prompts, when known: a row whose mixed prefix
        # turned out to be the student's own continues exactly like them (greedy is a
        # function of the prefix), so it takes their tokens instead of decoding them again
        self.reference = reference
        plan = strategy.plan
        self.top_k = None if plan.full_rows else top_k
        self.full_dtype = plan.full_rows_dtype
        self.steps, self.budget, self.on_demand = plan.steps, plan.budget, plan.on_demand
        self.alphas = torch.zeros(len(gens))
        self.next: TeacherNext | None = None
        self._pending = None
        # on demand: each row's index in the teacher's session, and the tokens of its answer the teacher has read
        self.slot: dict[int, int] = {r: i for i, r in enumerate(rows)}
        self.fed: dict[int, int] = dict.fromkeys(rows, 0)
        ask_for(teacher, session, self.top_k, self.full_dtype)  # what the session's steps carry

    def send_prefill(self, prompts: list[Prompt], full: bool = False) -> None:
        """Start the teacher's prefill of the phase's rows (full rows when the caller reads
        them, e.g. a two-model α-predictor)."""
        for r in self.rows:
            self.gens[r].teacher_tokens_processed += self.teacher.prompt_cost(prompts[r])
            self.gens[r].teacher_calls += 1
        if full:  # this answer only; the steps after it carry the phase's transport again
            ask_for(self.teacher, self.session)
        self._pending = self.teacher.prefill_async(self.session, [prompts[r] for r in self.rows])
        if full:
            ask_for(self.teacher, self.session, self.top_k, self.full_dtype)

    def choose(self, alphas: torch.Tensor) -> None:
        """Per-row α ([B], one per gens row); rows with α = 0 leave the teacher, except on
        demand, where α is the first consultation's and a row may consult later."""
        self.alphas = alphas
        keep = [i for i, r in enumerate(self.rows) if self.on_demand or float(alphas[r]) != 0.0]
        if not keep:
            self.close()
            return
        if len(keep) < len(self.rows):
            self.teacher.fork(self.session, keep)
            self.next = self.next.select(keep)
            self.rows = [self.rows[i] for i in keep]
            self.slot = {r: i for i, r in enumerate(self.rows)}
        if not self.on_demand:
            for r in self.rows:
                self.gens[r].alpha = float(alphas[r])

    def close(self) -> None:
        self.teacher.close(self.session)
        self.next, self.rows = None, []

    @property
    def open(self) -> bool:
        return self.next is not None

    def apply(self, t: int, p: torch.Tensor, active: list[int], tokens: torch.Tensor) -> None:
        if self.next is None:
            return
        at = {r: i for i, r in enumerate(active)}  # `send` keeps the phase's rows among the active ones
        rows, teacher = self.rows, self.next
        if self.on_demand:
            asked = self.strategy.consults(t, p[[at[r] for r in rows]], self.alphas[rows].to(p.device), self._spent(rows, p))
            rows = [r for r, ask in zip(rows, asked.tolist()) if ask]
            if not rows:
                return
            teacher = self._caught_up(t, rows)
        pos = torch.tensor([at[r] for r in rows], device=p.device)
        alphas = self.strategy.alphas_at(t, self.alphas[rows].to(p.device))
        picked, from_teacher = self.strategy.pick(t, p[pos], teacher, alphas, self._spent(rows, p))
        self._record(t, rows, p[pos], alphas, picked, from_teacher, tokens[pos])
        tokens[pos] = picked

    def _spent(self, rows: list[int], p: torch.Tensor) -> torch.Tensor | None:
        """Teacher tokens each row has taken so far, where the plan has a budget."""
        return None if self.budget is None else torch.tensor([self.gens[r].teacher_tokens for r in rows], device=p.device)

    def _caught_up(self, t: int, rows: list[int]) -> TeacherNext:
        """The teacher's distribution for `rows` at step t: its prefill's, at the first step,
        else after feeding each row what it wrote since the teacher last read it (rows that
        left the phase are dropped from the session on the way)."""
        if t == 0:
            return self.next.subset([self.slot[r] for r in rows])
        drop = len(self.rows) < len(self.slot)
        index = {r: i for i, r in enumerate(self.rows)}
        feed = [[] for _ in self.rows]
        for r in rows:
            gen = self.gens[r]
            feed[index[r]] = gen.token_ids[self.fed[r]:]
            gen.teacher_tokens_processed += len(feed[index[r]])
            gen.teacher_calls += 1
            self.fed[r] = len(gen.token_ids)
        out = self.teacher.extend(self.session, feed, rows=[self.slot[r] for r in self.rows] if drop else None)
        self.slot = index
        return TeacherNext(self.teacher, self.session, out, rows=[index[r] for r in rows])

    def _record(self, t: int, rows: list[int], p: torch.Tensor, alphas: torch.Tensor, picked: torch.Tensor,
                from_teacher: torch.Tensor, own: torch.Tensor) -> None:
        took = from_teacher.tolist()
        if not any(took):
            return
        unsure, changed = self.strategy.uncertainty(p).tolist(), (picked != own).tolist()
        for i, r in enumerate(rows):
            if took[i]:
                gen = self.gens[r]
                gen.teacher_positions.append(len(gen.token_ids))
                gen.consultations.append(Consultation(t, unsure[i], float(alphas[i]), changed[i]))
                gen.teacher_tokens += 1
                gen.teacher_changed_tokens += int(changed[i])
                if self.on_demand and gen.alpha == 0.0:
                    gen.alpha = float(alphas[i])

    def send(self, t: int, still: list[int], token_of: dict[int, int]) -> list[int]:
        """Start the teacher's step t for the rows still decoding (on demand: only note which
        rows still may consult), or leave the teacher once it is not needed; the rows the
        student still steps."""
        if self.next is None:
            return still
        steps = self.steps
        alive = set(still)
        # a row that spent its budget leaves the teacher (its steps are no longer needed)
        remaining = [r for r in self.rows if r in alive and (self.budget is None or self.gens[r].teacher_tokens < self.budget)]
        if not remaining or (steps is not None and t >= steps):
            self.close()
            return self._settle(still)
        if self.on_demand:
            self.rows = remaining  # the session drops the others at the next catch-up
            return still
        at = {r: i for i, r in enumerate(self.rows)}
        keep = [at[r] for r in remaining]
        fed = torch.tensor([token_of[r] for r in remaining])
        self._pending = self.teacher.step_async(self.session, fed, rows=keep if len(keep) < len(self.rows) else None)
        self.rows = remaining
        for r in remaining:
            self.gens[r].teacher_tokens_processed += 1
            self.gens[r].teacher_calls += 1
        return still

    def _settle(self, still: list[int]) -> list[int]:
        """Finish the rows whose tokens so far are their reference's; the others still decode."""
        if self.reference is None:
            return still
        left = []
        for r in still:
            gen, ref = self.gens[r], self.reference[r]
            if ref is not None and ref.token_ids[: len(gen.token_ids)] == gen.token_ids:
                gen.token_ids, gen.finish_reason, gen.tokens_processed = list(ref.token_ids), ref.finish_reason, ref.tokens_processed
            else:
                left.append(r)
        return left

    def receive(self) -> None:
        if self._pending is not None:
            self.next = TeacherNext(self.teacher, self.session, self._pending.result())
            self._pending = None
