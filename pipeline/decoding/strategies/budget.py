"""A budget of K teacher-decided tokens spent anywhere: at each step where the student is
unsure (its entropy over `threshold` nats, or its top-1 − top-2 margin under it), while the
row has budget left, the token is the mixed p_s + α(p_t − p_s). The teacher keeps pace with
the student until the row's budget is spent, then leaves it."""
from typing import Annotated, Literal

import torch

from pipeline.config.schema import Alpha, Number, PosInt, doc
from pipeline.decoding.distributions import entropy
from pipeline.decoding.strategies.base import Strategy, TeacherPlan, strategy
from pipeline.decoding.teacher_next import TeacherNext, mixed_argmax


@strategy("budget")
class Budget(Strategy):
    k: Annotated[PosInt, doc("K: teacher-decided tokens per answer at most")] = 2
    threshold: Annotated[Number, doc("entropy (nats) above which, or margin below which, the student is unsure")] = 1.0
    signal: Annotated[Literal["entropy", "margin"], doc("the student's uncertainty: entropy, or top-1 − top-2 margin")] = "entropy"
    alpha: Annotated[Alpha, doc("the mixing weight α of each teacher-decided token")] = 1.0

    @property
    def plan(self) -> TeacherPlan:
        return TeacherPlan(steps=None, every_row=self.alpha != 0, budget=self.k)

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        return torch.full((p_first.shape[0],), float(self.alpha), device=p_first.device)

    def unsure(self, p: torch.Tensor) -> torch.Tensor:
        if self.signal == "entropy":
            return entropy(p) > self.threshold
        top = p.topk(2, dim=-1).values
        return top[:, 0] - top[:, 1] < self.threshold

    def pick(self, t: int, p_student: torch.Tensor, teacher: TeacherNext, alphas: torch.Tensor,
             spent: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        take = self.unsure(p_student) & (spent < self.k)
        own = p_student.argmax(dim=-1)
        if not bool(take.any()):
            return own, take
        return torch.where(take, mixed_argmax(p_student, teacher, alphas), own), take
