"""CoT-decoding (Wang and Zhou, 2024): branch on the k best first tokens, of p_s or (α ≠ 0) of
p_s + α(p_t − p_s), continue each greedily, keep the path whose answer is decoded most
confidently. `answer_span` finds the answer in a path's text: the benchmark's extraction,
handed in by the task (decoding does not read benchmarks)."""
from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from pipeline.config.schema import MAX_SAMPLES, Alpha, Int, doc
from pipeline.decoding import cot
from pipeline.decoding.distributions import entropy
from pipeline.decoding.generation import Generation
from pipeline.decoding.strategies.base import Strategy, TeacherPlan, runtime_field, strategy
from pipeline.decoding.teacher_next import TeacherNext, ask_for
from pipeline.engine.interface import Prompt

if TYPE_CHECKING:
    from pipeline.decoding.decoder import Decoder


@strategy("cot_decoding")
class CotDecoding(Strategy):
    alone = True
    k: Annotated[Int, Field(ge=1, le=MAX_SAMPLES), doc("branches: the k best first tokens, each continued greedily")] = 10
    alpha: Annotated[Alpha, doc("≠ 0: branch on the k best of p_s + α(p_t − p_s), the teacher's only step")] = 0.0
    answer_span: Callable[[str], tuple[int, int] | None] | None = runtime_field()
    runtime_fields = ("answer_span",)

    @property
    def plan(self) -> TeacherPlan:
        # the teacher shapes the branching token only, read whole so the mixed top-k is exact
        return TeacherPlan(steps=1 if self.alpha != 0 else 0, reads_first=self.alpha != 0)

    def params(self) -> dict:
        return {"k": self.k, "alpha": self.alpha, "n_tokens": self.plan.steps}

    def with_answer_span(self, find: Callable[[str], tuple[int, int] | None]) -> "CotDecoding":
        return dataclasses.replace(self, answer_span=find)

    def decode_alone(self, decoder: Decoder, prompts: list[Prompt]) -> list[Generation]:
        """Each row's top-k first tokens continued greedily in one batch, the most confident
        path kept. With α ≠ 0 the teacher is prefilled alongside the student and left after
        it: it shapes the branching token only (full rows, so that the mixed top-k is exact:
        one row per example, once)."""
        if self.answer_span is None:
            raise ValueError("cot_decoding needs the benchmark's answer_span (see pipeline.tasks.evaluate.for_examples)")
        student, teacher_engine = decoder.student, decoder.teacher
        session = uuid.uuid4().hex
        gens = [Generation(tokens_processed=student.prompt_cost(p), alpha=self.alpha) for p in prompts]
        teacher = None
        try:
            if self.alpha:
                ask_for(teacher_engine, session)  # full rows: one per example, once
                teacher = TeacherNext(teacher_engine, session, teacher_engine.prefill_async(session, prompts))
                for gen, prompt in zip(gens, prompts):
                    gen.read_by_teacher(teacher_engine.prompt_cost(prompt))
            p = student.prefill(session, prompts).probs
            first = cot.first_distribution(p, None if teacher is None else teacher.full(), self.alpha)
            paths = cot.decode_branches(student, session, first, self.k, decoder.stop, decoder.tokenizer)
        finally:
            student.close(session)
            if self.alpha:  # also after a failure before the teacher's prefill was read
                teacher_engine.close(session)
        for gen, row, h, own in zip(gens, paths, entropy(p).tolist(), p.argmax(dim=-1).tolist()):
            best = cot.most_confident(row, [decoder.finish_text(b) for b in row], self.answer_span, decoder.tokenizer)
            gen.token_ids, gen.finish_reason, gen.student_first_entropy = best.token_ids, best.finish_reason, h
            gen.tokens_processed += sum(b.tokens_processed for b in row)  # every branch was decoded for it
            gen.cot_k, gen.cot_branch, gen.cot_confidence = len(row), best.rank, best.confidence
            if teacher is not None:
                gen.teacher_tokens, gen.teacher_positions, gen.teacher_changed_tokens = 1, [0], int(best.token_ids[0] != own)
            gen.text = decoder.finish_text(gen)
        return gens
