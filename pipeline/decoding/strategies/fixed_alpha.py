"""The founding method: mix p_s + α(p_t − p_s) for the first N tokens, then the student alone."""
import torch

from typing import Annotated

from pipeline.config.schema import Alpha, Count, doc
from pipeline.decoding.strategies.base import Strategy, TeacherPlan, strategy


@strategy("fixed_alpha")
class FixedAlpha(Strategy):
    alpha: Annotated[Alpha, doc("the mixing weight α of p_s + α(p_t − p_s)")] = 1.0
    n_tokens: Annotated[Count, doc("N: the first tokens the teacher shapes")] = 1

    @property
    def plan(self) -> TeacherPlan:
        return TeacherPlan(steps=self.n_tokens, every_row=self.alpha != 0 and self.n_tokens > 0)

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        value = self.alpha if self.n_tokens > 0 else 0.0
        return torch.full((p_first.shape[0],), float(value), device=p_first.device)
