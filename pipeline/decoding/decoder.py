"""The decoder: every strategy runs in one batched loop over the engine interface.

Read it like gpt-fast's generate.py: `prefill` the student, let the strategy decide which
rows consult the teacher, then `decode_steps` (the engine's one step loop) with the
teacher phase hooked in until every row stopped. The teacher is asked once per step per
batch, only for the rows and steps the strategy needs; finished rows leave the batch.
A strategy whose generator is the teacher is handed whole to the teacher's engine;
CoT-decoding branches the student's first token (`pipeline.decoding.cot`).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import torch

from pipeline.decoding import cot
from pipeline.decoding.distributions import entropy
from pipeline.decoding.strategies import CotDecoding, Strategy
from pipeline.decoding.teacher_next import TeacherNext
from pipeline.engine.interface import Completion, Generator, Prompt, Sampler, StepEngine
from pipeline.engine.steps import decode_steps, record_token
from pipeline.engine.stop import StopRule


@dataclass
class Generation(Completion):
    """What decoding one example produced, with its cost counters. `tokens_processed`
    counts the tokens the student was fed for it."""

    text: str = ""
    alpha: float = 0.0  # mixing weight this row used (0: teacher never asked)
    teacher_tokens: int = 0  # generated tokens decided with the teacher's distribution
    teacher_changed_tokens: int = 0  # ...of which differ from the student's own argmax
    teacher_positions: list[int] = field(default_factory=list)  # indices of those tokens in token_ids
    teacher_tokens_processed: int = 0
    student_first_entropy: float | None = None
    cot_k: int | None = None  # CoT-decoding: branches, the kept one's rank among the top-k first tokens, its confidence
    cot_branch: int | None = None
    cot_confidence: float | None = None

    @property
    def student_tokens_processed(self) -> int:
        return self.tokens_processed


class TeacherPhase:
    """The teacher's part of a decoding run, hooked into the step loop: which rows consult
    it, with which α, until which step.

    `apply` overwrites the tokens of consulting rows at step t; `send` feeds the chosen
    tokens to the teacher's cache (one call per step per batch, sent before the student's
    own step and received after it) and drops rows and steps it is no longer needed for.
    Between the calls the teacher's distribution is a `TeacherNext`: its top-k, and full
    rows only where a strategy needs them.
    """

    def __init__(self, strategy: Strategy, teacher: StepEngine, session: str, rows: list[int], gens: list[Generation],
                 top_k: int | None, reference: list[Generation] | None = None):
        self.strategy, self.teacher, self.session = strategy, teacher, session
        self.rows, self.gens = rows, gens
        # the student-greedy rows of the same prompts, when known: a row whose mixed prefix
        # turned out to be the student's own continues exactly like them (greedy is a
        # function of the prefix), so it takes their tokens instead of decoding them again
        self.reference = reference
        self.top_k = None if strategy.plan.full_rows else top_k
        self.full_dtype = strategy.plan.full_rows_dtype
        self.steps = strategy.plan.steps
        self.alphas = torch.zeros(len(gens))
        self.next: TeacherNext | None = None
        self._pending = None

    def send_prefill(self, prompts: list[Prompt], full: bool = False) -> None:
        """Start the teacher's prefill of the phase's rows (full rows when the caller reads
        them, e.g. a two-model α-predictor)."""
        for r in self.rows:
            self.gens[r].teacher_tokens_processed += self.teacher.prompt_cost(prompts[r])
        self._pending = self.teacher.prefill_async(self.session, [prompts[r] for r in self.rows],
                                                   top_k=None if full else self.top_k,
                                                   full_dtype=None if full else self.full_dtype)

    def start(self, prompts: list[Prompt], full: bool = False) -> TeacherNext:
        """Prefill the teacher for the phase's rows; their first-token distribution."""
        self.send_prefill(prompts, full)
        self.receive()
        return self.next

    def choose(self, alphas: torch.Tensor) -> None:
        """Per-row α ([B], one per gens row); rows with α = 0 leave the teacher."""
        self.alphas = alphas
        keep = [i for i, r in enumerate(self.rows) if float(alphas[r]) != 0.0]
        if not keep:
            self.close()
            return
        if len(keep) < len(self.rows):
            self.teacher.fork(self.session, keep)
            self.next = self.next.select(keep)
            self.rows = [self.rows[i] for i in keep]
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
        at = {r: i for i, r in enumerate(active)}
        pos = torch.tensor([at[r] for r in self.rows], device=p.device)
        picked, from_teacher = self.strategy.pick(t, p[pos], self.next, self.alphas[self.rows].to(p.device))
        changed = picked != tokens[pos]
        tokens[pos] = picked
        for r, took, diff in zip(self.rows, from_teacher.tolist(), changed.tolist()):
            gen = self.gens[r]
            if took:
                gen.teacher_positions.append(len(gen.token_ids))
            gen.teacher_tokens += int(took)
            gen.teacher_changed_tokens += int(took and diff)

    def send(self, t: int, still: list[int], token_of: dict[int, int]) -> list[int]:
        """Start the teacher's step t for the rows still decoding, or leave the teacher once it
        is not needed; the rows the student still steps."""
        if self.next is None:
            return still
        steps = self.steps
        alive = set(still)
        remaining = [r for r in self.rows if r in alive]
        if not remaining or (steps is not None and t >= steps):
            self.close()
            return self._settle(still)
        at = {r: i for i, r in enumerate(self.rows)}
        keep = [at[r] for r in remaining]
        fed = torch.tensor([token_of[r] for r in remaining])
        self._pending = self.teacher.step_async(self.session, fed, rows=keep if len(keep) < len(self.rows) else None,
                                                top_k=self.top_k, full_dtype=self.full_dtype)
        self.rows = remaining
        for r in remaining:
            self.gens[r].teacher_tokens_processed += 1
        return still

    def _settle(self, still: list[int]) -> list[int]:
        """Finish the rows whose tokens so far are their reference's; the others still decode."""
        if self.reference is None:
            return still
        left = []
        for r in still:
            gen, ref = self.gens[r], self.reference[r]
            if ref.token_ids[: len(gen.token_ids)] == gen.token_ids:
                gen.token_ids, gen.finish_reason, gen.tokens_processed = list(ref.token_ids), ref.finish_reason, ref.tokens_processed
            else:
                left.append(r)
        return left

    def receive(self) -> None:
        if self._pending is not None:
            self.next = TeacherNext(self.teacher, self.session, self._pending.result())
            self._pending = None


class Decoder:
    """Runs strategies over batches of prompts with a student engine and a teacher engine.

    Either engine may be in process (`HFEngine`) or behind a Ray actor (`RemoteEngine`):
    the loop is the same.
    """

    def __init__(self, student: StepEngine, teacher: StepEngine | Generator, tokenizer, stop: StopRule,
                 teacher_top_k: int | None = 32):
        self.student, self.teacher, self.tokenizer, self.stop = student, teacher, tokenizer, stop
        self.teacher_top_k = teacher_top_k  # what a remote teacher sends per row and step (None: full rows)

    def generate(self, strategy: Strategy, prompts: list[Prompt], sampler: Sampler | None = None) -> list[Generation]:
        """Decode a batch with `strategy`; greedy unless a `sampler` picks the student's tokens."""
        if strategy.generator == "teacher":
            return self._teacher_alone(prompts)
        if strategy.generator == "branches":
            return self._branched(strategy, prompts)
        session = uuid.uuid4().hex
        gens = [Generation(tokens_processed=self.student.prompt_cost(p)) for p in prompts]
        phase = None
        try:
            early = self._early_phase(session, strategy, prompts, gens)
            first = self.student.prefill(session, prompts, strategy.feature_request)
            p = first.probs
            for g, h in zip(gens, entropy(p).tolist()):
                g.student_first_entropy = h
            phase = self._teacher_phase(session, strategy, prompts, p, first.features, gens, early)
            decode_steps(self.student, session, p, gens, list(range(len(prompts))), self.stop, self.tokenizer, sampler, phase)
        finally:
            self.student.close(session)
            if strategy.plan.steps != 0 and (phase is None or phase.open):  # also after a failure mid-phase
                self.teacher.close(session)
        for g in gens:
            g.text = self.finish_text(g)
        return gens

    def continue_greedy(self, session: str, p: torch.Tensor, gens: list[Generation]) -> None:
        """The student alone, greedily, from an open session whose rows are `gens` (each may
        already hold tokens) and whose next-token probabilities are `p`."""
        decode_steps(self.student, session, p, gens, list(range(len(gens))), self.stop, self.tokenizer)

    def record(self, gen: Generation, token: int) -> bool:
        """Append a token chosen outside the loop; True when the row is finished."""
        return record_token(gen, token, self.stop, self.tokenizer)

    def finish_text(self, gen: Generation) -> str:
        return self.stop.final_text(self.tokenizer, gen.token_ids)

    def _teacher_alone(self, prompts: list[Prompt]) -> list[Generation]:
        """The teacher decodes the whole batch inside its own engine: one call."""
        gens = []
        for c in self.teacher.generate(prompts, self.stop):
            n = len(c.token_ids)
            gens.append(Generation(
                token_ids=c.token_ids, finish_reason=c.finish_reason, teacher_tokens_processed=c.tokens_processed,
                teacher_tokens=n, teacher_positions=list(range(n)),
            ))
            gens[-1].text = self.finish_text(gens[-1])
        return gens

    def _branched(self, strategy: CotDecoding, prompts: list[Prompt]) -> list[Generation]:
        """CoT-decoding: each row's top-k first tokens continued greedily in one batch, the
        most confident path kept. With α ≠ 0 the teacher is prefilled alongside the student
        and left after it: it shapes the branching token only (full rows, so that the mixed
        top-k is exact: one row per example, once)."""
        if strategy.answer_span is None:
            raise ValueError("cot_decoding needs the benchmark's answer_span (see pipeline.tasks.evaluate.for_examples)")
        session = uuid.uuid4().hex
        gens = [Generation(tokens_processed=self.student.prompt_cost(p), alpha=strategy.alpha) for p in prompts]
        phase = TeacherPhase(strategy, self.teacher, session, list(range(len(prompts))), gens, self.teacher_top_k) if strategy.alpha else None
        try:
            if phase is not None:
                phase.send_prefill(prompts, full=True)
            p, p_teacher = self.student.prefill(session, prompts).probs, None
            if phase is not None:
                phase.receive()
                p_teacher = phase.next.full()
                phase.close()
            first = cot.first_distribution(p, p_teacher, strategy.alpha)
            paths = cot.decode_branches(self.student, session, first, strategy.k, self.stop, self.tokenizer)
        finally:
            self.student.close(session)
            if phase is not None:  # also after a failure before the teacher's prefill was read
                self.teacher.close(session)
        for gen, row, h, own in zip(gens, paths, entropy(p).tolist(), p.argmax(dim=-1).tolist()):
            best = cot.most_confident(row, [self.finish_text(b) for b in row], strategy.answer_span, self.tokenizer)
            gen.token_ids, gen.finish_reason, gen.student_first_entropy = best.token_ids, best.finish_reason, h
            gen.tokens_processed += sum(b.tokens_processed for b in row)  # every branch was decoded for it
            gen.cot_k, gen.cot_branch, gen.cot_confidence = len(row), best.rank, best.confidence
            if phase is not None:
                gen.teacher_tokens, gen.teacher_positions, gen.teacher_changed_tokens = 1, [0], int(best.token_ids[0] != own)
            gen.text = self.finish_text(gen)
        return gens

    def _early_phase(self, session, strategy, prompts, gens) -> TeacherPhase | None:
        """A teacher phase whose rows are known before the student's prefill (every row), with
        the teacher's prefill already sent, so both prefills run at once."""
        if not strategy.plan.prefills_every_row:
            return None
        phase = TeacherPhase(strategy, self.teacher, session, list(range(len(prompts))), gens, self.teacher_top_k)
        phase.send_prefill(prompts, full=strategy.plan.reads_first)
        return phase

    def _teacher_phase(self, session, strategy, prompts, p_first, features, gens, early) -> TeacherPhase | None:
        """The rows that consult the teacher, and with which α: every row (`early`, prefilled
        already), or those the student's prefill selects; a strategy that reads both models
        chooses after the teacher's prefill of every row (rows that end with α = 0 then leave it)."""
        if strategy.plan.steps == 0:
            return None
        if early is not None:
            phase = early
            phase.receive()
            p_teacher = phase.next.full().to(p_first.device) if strategy.plan.reads_first else None
            alphas = strategy.row_alphas(p_first, features, p_teacher).cpu()
        else:
            alphas = strategy.row_alphas(p_first, features).cpu()
            rows = [i for i, a in enumerate(alphas.tolist()) if a != 0.0]
            if not rows:
                return None
            phase = TeacherPhase(strategy, self.teacher, session, rows, gens, self.teacher_top_k)
            phase.start(prompts)
        phase.choose(alphas)
        return phase if phase.open else None
