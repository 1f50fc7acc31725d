"""The decoder: the two engines, the stop rule and the decodes every strategy runs on.

Read it like gpt-fast's generate.py: `generate` hands a strategy to the one orchestration
(`pipeline.decoding.shared_batch`), which prefills the student, lets the strategy decide
which rows consult the teacher, then runs `decode_steps` (the engine's one step loop) with
the teacher hooks in (`lockstep.py`, `on_demand.py`) until every row stopped. The teacher is
asked at most once per step per kind of hook, only for the rows and steps the strategy
needs; finished rows leave the batch.
A strategy whose generator is the teacher is handed whole to the teacher's engine
(`teacher_alone`); CoT-decoding branches the student's first token (`branched`).
"""
from __future__ import annotations

import uuid

import torch

from pipeline.decoding import cot
from pipeline.decoding.distributions import entropy
from pipeline.decoding.generation import Generation
from pipeline.decoding.shared_batch import decode_strategies
from pipeline.decoding.strategies import CotDecoding, Strategy
from pipeline.decoding.teacher_next import TeacherNext, ask_for
from pipeline.decoding.teacher_rows import bill_prompt
from pipeline.engine.interface import Generator, Prompt, Sampler, StepEngine
from pipeline.engine.steps import decode_steps, record_token
from pipeline.engine.stop import StopRule


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
        """Decode a batch with `strategy`; greedy unless a `sampler` picks the student's
        tokens (for strategies that decode the student alone)."""
        [done], _ = decode_strategies(self, [strategy], prompts, sampler)
        return done.gens

    @property
    def keeps_sessions(self) -> bool:
        """Whether the student continues rows in its session's KV cache (transformers) or, a
        backend without one, through `Generator.generate` with the tokens so far as a prefix."""
        return getattr(self.student, "keeps_sessions", True)

    def continue_greedy(self, session: str, p: torch.Tensor, gens: list[Generation], sampler: Sampler | None = None,
                        prompts: list[Prompt] | None = None) -> None:
        """The student alone, greedily (or as `sampler` draws), from an open session whose rows
        are `gens` (each may already hold tokens) and whose next-token probabilities are `p`;
        `prompts` (one per row) let a backend without sessions continue them instead."""
        if self.keeps_sessions or prompts is None:
            decode_steps(self.student, session, p, gens, list(range(len(gens))), self.stop, self.tokenizer, sampler)
        else:
            self.continue_plain(prompts, gens, list(range(len(gens))), sampler)

    def continue_plain(self, prompts: list[Prompt], gens: list[Generation], rows: list[int], sampler: Sampler | None = None) -> None:
        """Rows `rows` of `gens` continued to the stop rule by the student's `Generator`, from
        their prompt and the tokens they hold (one call for all of them)."""
        done = self.student.generate([prompts[r] for r in rows], self.stop, sampler, prefixes=[gens[r].token_ids for r in rows])
        for r, row in zip(rows, done):
            gen = gens[r]
            gen.token_ids, gen.finish_reason = list(row.token_ids), row.finish_reason
            gen.tokens_processed += row.tokens_processed

    def record(self, gen: Generation, token: int) -> bool:
        """Append a token chosen outside the loop; True when the row is finished."""
        return record_token(gen, token, self.stop, self.tokenizer)

    def finish_text(self, gen: Generation) -> str:
        return self.stop.final_text(self.tokenizer, gen.token_ids)

    def teacher_alone(self, prompts: list[Prompt]) -> list[Generation]:
        """The teacher decodes the whole batch inside its own engine: one call."""
        gens = []
        for c in self.teacher.generate(prompts, self.stop):
            n = len(c.token_ids)
            gens.append(Generation(
                token_ids=c.token_ids, finish_reason=c.finish_reason, teacher_tokens_processed=c.tokens_processed,
                teacher_tokens=n, teacher_positions=list(range(n)), teacher_calls=1,
            ))
            gens[-1].text = self.finish_text(gens[-1])
        return gens

    def branched(self, strategy: CotDecoding, prompts: list[Prompt]) -> list[Generation]:
        """CoT-decoding: each row's top-k first tokens continued greedily in one batch, the
        most confident path kept. With α ≠ 0 the teacher is prefilled alongside the student
        and left after it: it shapes the branching token only (full rows, so that the mixed
        top-k is exact: one row per example, once)."""
        if strategy.answer_span is None:
            raise ValueError("cot_decoding needs the benchmark's answer_span (see pipeline.tasks.evaluate.for_examples)")
        session = uuid.uuid4().hex
        gens = [Generation(tokens_processed=self.student.prompt_cost(p), alpha=strategy.alpha) for p in prompts]
        teacher = None
        try:
            if strategy.alpha:
                ask_for(self.teacher, session)  # full rows: one per example, once
                teacher = TeacherNext(self.teacher, session, self.teacher.prefill_async(session, prompts))
                for gen, prompt in zip(gens, prompts):
                    bill_prompt(gen, self.teacher, prompt)
            p = self.student.prefill(session, prompts).probs
            first = cot.first_distribution(p, None if teacher is None else teacher.full(), strategy.alpha)
            paths = cot.decode_branches(self.student, session, first, strategy.k, self.stop, self.tokenizer)
        finally:
            self.student.close(session)
            if strategy.alpha:  # also after a failure before the teacher's prefill was read
                self.teacher.close(session)
        for gen, row, h, own in zip(gens, paths, entropy(p).tolist(), p.argmax(dim=-1).tolist()):
            best = cot.most_confident(row, [self.finish_text(b) for b in row], strategy.answer_span, self.tokenizer)
            gen.token_ids, gen.finish_reason, gen.student_first_entropy = best.token_ids, best.finish_reason, h
            gen.tokens_processed += sum(b.tokens_processed for b in row)  # every branch was decoded for it
            gen.cot_k, gen.cot_branch, gen.cot_confidence = len(row), best.rank, best.confidence
            if teacher is not None:
                gen.teacher_tokens, gen.teacher_positions, gen.teacher_changed_tokens = 1, [0], int(best.token_ids[0] != own)
            gen.text = self.finish_text(gen)
        return gens
