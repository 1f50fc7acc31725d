"""What decoding one example produced, with the cost counters its result row reports."""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.engine.interface import Completion


@dataclass(frozen=True)
class Consultation:
    """A token the teacher decided in a row: its step, how unsure the student was there (as
    the strategy measures it: entropy in nats, or a top-1 − top-2 margin), the α it was mixed
    with, and whether it differs from the student's own argmax."""

    step: int
    uncertainty: float
    alpha: float
    changed: bool


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
    teacher_calls: int = 0  # teacher forwards that computed for this row: a per-request teacher's requests
    consultations: list[Consultation] = field(default_factory=list)  # the student-loop strategies' teacher tokens
    student_first_entropy: float | None = None
    cot_k: int | None = None  # CoT-decoding: branches, the kept one's rank among the top-k first tokens, its confidence
    cot_branch: int | None = None
    cot_confidence: float | None = None

    @property
    def student_tokens_processed(self) -> int:
        return self.tokens_processed

    def read_by_teacher(self, tokens: int) -> None:
        """One teacher call that read `tokens` of this row: its prompt, a step, or a catch-up."""
        self.teacher_tokens_processed += tokens
        self.teacher_calls += 1
