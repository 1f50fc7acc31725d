"""SWITCH: the teacher's token wherever JSD(p_t, p_s) > τ0·exp(−λ·t), at every step."""
import math

import torch

from typing import Annotated

from pydantic import Field

from pipeline.config.schema import Finite, doc
from pipeline.decoding.distributions import at_bfloat16, jsd
from pipeline.decoding.strategies.base import Strategy, TeacherPlan, strategy
from pipeline.decoding.teacher_next import TeacherNext

NonNegative = Annotated[Finite, Field(ge=0)]


@strategy("switch")
class Switch(Strategy):
    tau0: Annotated[NonNegative, doc("τ0: the divergence threshold at the first step")] = 0.1
    lam: Annotated[NonNegative, doc("λ: how fast the threshold decays per step")] = 0.1

    @property
    def plan(self) -> TeacherPlan:
        # the divergence needs both whole distributions; a remote teacher's rows cross at half
        # the bytes, `pick` reads them so on every path and takes the teacher's exact argmax
        return TeacherPlan(steps=None, every_row=True, full_rows=True, full_rows_dtype="bfloat16")

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ones(p_first.shape[0], device=p_first.device)

    def threshold(self, t: int) -> float:
        return self.tau0 * math.exp(-self.lam * t)

    def pick(self, t: int, p_student: torch.Tensor, teacher: TeacherNext, alphas: torch.Tensor,
             spent: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        p_teacher = at_bfloat16(teacher.full().to(p_student.device))
        take_teacher = jsd(p_teacher, p_student) > self.threshold(t)
        tokens = torch.where(take_teacher, teacher.argmax().to(p_student.device), p_student.argmax(dim=-1))
        return tokens, take_teacher
