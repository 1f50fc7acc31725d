"""A budget of K teacher-decided tokens spent anywhere: at each step where the student is
unsure (its entropy over `threshold` nats, or its top-1 − top-2 margin under it), while the
row has budget left, the token is the mixed p_s + α(p_t − p_s). The teacher is not stepped
along: at a consultation it catches up on what the row wrote since it last read it. With an
α-predictor `artifact`, the first N tokens it was trained on take its α instead (consulting
where that α is not 0, whatever the threshold), and `alpha` the consultations after them; an
artifact trained on position labels also gives the K, threshold, signal and α it calibrated
to those the entry leaves out."""
from typing import Annotated, Any, Literal

import torch
from pydantic import model_validator

from pipeline.config.schema import Alpha, Number, PosInt, Str, doc
from pipeline.decoding.distributions import entropy
from pipeline.decoding.strategies.base import LoadArtifact, Strategy, TeacherPlan, runtime_field, strategy
from pipeline.decoding.strategies.predicted_alpha import check_policy_student, with_policy
from pipeline.decoding.teacher_next import TeacherNext, mixed_argmax
from pipeline.engine.interface import FeatureRequest
from pipeline.errors import UserError


DEFAULTS = {"k": 2, "threshold": 1.0, "signal": "entropy", "alpha": 1.0}


@strategy("budget")
class Budget(Strategy):
    k: Annotated[PosInt | None, doc("K: teacher-decided tokens per answer at most, an artifact's first tokens included "
                                    "(default 2 and at least its N, or the artifact's)")] = None
    threshold: Annotated[Number | None, doc("entropy (nats) above which, or margin below which, the student is unsure "
                                            "(default 1.0, or the artifact's)")] = None
    signal: Annotated[Literal["entropy", "margin"] | None,
                      doc("the student's uncertainty: entropy, or top-1 − top-2 margin (default entropy, or the artifact's)")] = None
    alpha: Annotated[Alpha | None, doc("the mixing weight α of each teacher-decided token (default 1.0, or the artifact's)")] = None
    artifact: Annotated[Str, doc("an α-predictor artifact: its α for the first N tokens it was trained on, `alpha` after; "
                                 "the k, threshold, signal and alpha it calibrated fill those the entry leaves out")] = ""
    policy: Any = runtime_field()  # the loaded artifact (an `AlphaPolicy`)
    runtime_fields = ("policy",)

    @model_validator(mode="after")
    def _defaults(self):
        if not self.artifact:  # with one, `resolved` fills them from its calibration first
            self._fill({})
        return self

    def _fill(self, calibrated: dict) -> None:
        for name, default in DEFAULTS.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, calibrated.get(name, default))

    @property
    def first_tokens(self) -> int:
        """The steps whose α the artifact predicts (0 without one)."""
        return 0 if self.policy is None else self.policy.n_tokens

    @property
    def plan(self) -> TeacherPlan:
        # α = 0 after the artifact's first tokens: nothing to ask once they are written
        steps = self.first_tokens if self.alpha == 0 else None
        reads_first = self.policy is not None and self.policy.needs_teacher
        return TeacherPlan(steps=steps, every_row=True, reads_first=reads_first, budget=self.k, on_demand=True)

    def resolved(self, load_artifact: LoadArtifact | None) -> "Budget":
        loaded = with_policy(self, load_artifact)
        if loaded is self:
            return self
        n = loaded.first_tokens
        if loaded.k is not None and loaded.k < n:
            raise UserError(f"budget: k ({loaded.k}) is below the {n} first tokens {self.artifact} decides, which count "
                            f"against it: give k ≥ {n}")
        loaded._fill({"k": max(DEFAULTS["k"], n), **(loaded.policy.budget or {})})
        return loaded

    def params(self) -> dict:
        params = super().params()
        if self.policy is None:
            return {k: v for k, v in params.items() if k != "artifact"}
        return {**params, "artifact": self.policy.source, "first_tokens": self.first_tokens}

    def note(self) -> str | None:
        if self.policy is None:
            return None
        how = "calibrated by" if self.policy.budget else "α from"
        return (f"{how} {self.policy.source}: its α for the first {self.first_tokens} token(s) where it is not 0, then "
                f"α = {self.alpha:g} where the student's {self.signal} is {'over' if self.signal == 'entropy' else 'under'} "
                f"{self.threshold:g}, {self.k} teacher tokens at most")

    @property
    def feature_request(self) -> FeatureRequest | None:
        return None if self.policy is None else self.policy.feature_request

    def check_student(self, identity: str) -> None:
        if self.policy is not None:
            check_policy_student(self.policy, identity)

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        if self.policy is not None:
            return self.policy.alphas(features, p_first, p_teacher).float().to(p_first.device)
        return torch.full((p_first.shape[0],), float(self.alpha), device=p_first.device)

    def alphas_at(self, t: int, alphas: torch.Tensor) -> torch.Tensor:
        return alphas if t < self.first_tokens else torch.full_like(alphas, float(self.alpha))

    def uncertainty(self, p_student: torch.Tensor) -> torch.Tensor:
        if self.signal == "entropy":
            return entropy(p_student)
        top = p_student.topk(2, dim=-1).values
        return top[:, 0] - top[:, 1]

    def consults(self, t: int, p_student: torch.Tensor, alphas: torch.Tensor, spent: torch.Tensor | None) -> torch.Tensor:
        if t < self.first_tokens:  # they count against K too
            wanted = alphas != 0
        elif self.signal == "entropy":
            wanted = self.uncertainty(p_student) > self.threshold
        else:
            wanted = self.uncertainty(p_student) < self.threshold
        return wanted & (spent < self.k)

    def pick(self, t: int, p_student: torch.Tensor, teacher: TeacherNext, alphas: torch.Tensor,
             spent: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = mixed_argmax(p_student, teacher, alphas)
        return tokens, torch.ones_like(tokens, dtype=torch.bool)
