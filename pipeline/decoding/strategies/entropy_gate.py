"""Fixed α only for rows whose student first-token entropy (nats) lies in a band [lo, hi]: the
teacher is asked where the student is unsure. With `artifact`, α, N and the band are the ones
an α-predictor calibrated on its labels."""
import dataclasses
import math

import torch
from pydantic import model_validator
from pydantic_core import ArgsKwargs

from typing import Annotated, Any

from pipeline.config.schema import Number, Str, doc
from pipeline.decoding.distributions import entropy
from pipeline.decoding.strategies.base import LoadArtifact, TeacherPlan, runtime_field, strategy
from pipeline.decoding.strategies.fixed_alpha import FixedAlpha
from pipeline.errors import UserError


@strategy("entropy_gate")
class EntropyGate(FixedAlpha):
    lo: Annotated[Number, doc("the band's low end: first-token entropy of the student, nats")] = 0.0
    hi: Annotated[Number, doc("the band's high end")] = math.inf
    artifact: Annotated[Str, doc("an α-predictor artifact: α, N and the band it calibrated replace the above")] = ""
    student: str = runtime_field("")  # the student a calibrated gate was calibrated on
    runtime_fields = ("student",)

    @model_validator(mode="before")
    @classmethod
    def _artifact_or_own(cls, given: Any) -> Any:
        """An artifact's α, N and band replace the entry's own, so an entry that gives both would
        run with the artifact's while its label shows its own. `resolved` passes every field,
        the runtime `student` among them, which a config entry never can."""
        fields = (given.kwargs or {}) if isinstance(given, ArgsKwargs) else given if isinstance(given, dict) else {}
        own = [name for name in ("alpha", "n_tokens", "lo", "hi") if name in fields]
        if fields.get("artifact") and own and "student" not in fields:
            raise ValueError(f"an artifact sets α, N and the band it calibrated: give {', '.join(own)} or the artifact, not both")
        return given

    @model_validator(mode="after")
    def _band(self):
        if not self.lo <= self.hi:
            raise ValueError(f"lo ({self.lo}) must not exceed hi ({self.hi})")
        return self

    @property
    def plan(self) -> TeacherPlan:
        return TeacherPlan(steps=self.n_tokens)  # the band decides per row

    def params(self) -> dict:
        params = super().params()
        return params if self.artifact else {k: v for k, v in params.items() if k != "artifact"}

    def resolved(self, load_artifact: LoadArtifact | None) -> "EntropyGate":
        if not self.artifact:
            return self
        if load_artifact is None:
            raise UserError(f"entropy_gate: an artifact ({self.artifact}) needs the α-predictor loader")
        policy = load_artifact(self.artifact)
        gate = policy.gate
        return dataclasses.replace(self, alpha=gate["alpha"], n_tokens=policy.n_tokens, lo=gate["lo"], hi=gate["hi"], student=policy.student)

    def note(self) -> str | None:
        if not self.artifact:
            return None
        return (f"calibrated by {self.artifact}: α = {self.alpha:g} for the first {self.n_tokens} token(s) where the "
                f"student's first-token entropy is in [{self.lo:.3f}, {self.hi:.3f}] nats")

    def check_student(self, identity: str) -> None:
        if self.student and self.student != identity:
            raise UserError(f"entropy gate of {self.artifact} was calibrated for student '{self.student}', but the student in use is '{identity}'")

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        h = entropy(p_first)
        inside = (h >= self.lo) & (h <= self.hi)
        return super().row_alphas(p_first) * inside
