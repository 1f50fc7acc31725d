"""CoT-decoding (Wang and Zhou, 2024): branch on the k best first tokens, of p_s or (α ≠ 0) of
p_s + α(p_t − p_s), continue each greedily, keep the path whose answer is decoded most
confidently. `answer_span` finds the answer in a path's text: the benchmark's extraction,
handed in by the task (decoding does not read benchmarks)."""
import dataclasses
from collections.abc import Callable
from typing import Annotated

from pydantic import Field

from pipeline.config.schema import MAX_SAMPLES, Alpha, Int, doc
from pipeline.decoding.strategies.base import Strategy, TeacherPlan, runtime_field, strategy


@strategy("cot_decoding")
class CotDecoding(Strategy):
    generator = "branches"
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
