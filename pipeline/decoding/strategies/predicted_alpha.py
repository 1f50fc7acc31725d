"""α per example from an α-predictor artifact, on the student's prefill features (and, for a
two-model predictor, the teacher's first distribution); rows predicted α = 0 are decoded by
the student alone."""
import dataclasses
from typing import Annotated, Any

import torch
from pydantic import Field

from pipeline.config.schema import Str, doc

from pipeline.decoding.strategies.base import AlphaPolicy, LoadArtifact, Strategy, TeacherPlan, runtime_field, strategy
from pipeline.engine.interface import FeatureRequest
from pipeline.errors import UserError


@strategy("predicted_alpha")
class PredictedAlpha(Strategy):
    artifact: Annotated[Str, Field(min_length=1), doc("the α-predictor artifact directory (jobs.train_predictor --out)")]
    policy: Any = runtime_field()  # the loaded artifact (an `AlphaPolicy`)
    runtime_fields = ("policy",)

    def resolved(self, load_artifact: LoadArtifact | None) -> "PredictedAlpha":
        return with_policy(self, load_artifact)

    @property
    def _policy(self):
        if self.policy is None:
            raise UserError(f"predicted_alpha: the artifact {self.artifact} is not loaded (build the strategy with a loader)")
        return self.policy

    @property
    def plan(self) -> TeacherPlan:
        return TeacherPlan(steps=self._policy.n_tokens, reads_first=self._policy.needs_teacher)

    def params(self) -> dict:
        decision = self._policy.decision
        return {"artifact": self._policy.source, "n_tokens": self._policy.n_tokens, "policy": decision["kind"],
                "default_alpha": decision["default_alpha"], "threshold": decision["threshold"]}

    def note(self) -> str | None:
        decision = self._policy.decision
        if decision["kind"] != "fixed":
            return None
        return (f"{self._policy.source} uses the fixed policy: every example decodes with α = {decision['default_alpha']:g} "
                f"(the best fixed α of its labels): {decision['reason']}")

    @property
    def feature_request(self) -> FeatureRequest:
        return self._policy.feature_request

    def check_student(self, identity: str) -> None:
        check_policy_student(self._policy, identity)

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        return self._policy.alphas(features, p_first, p_teacher).float().to(p_first.device)


def with_policy(strategy, load_artifact: LoadArtifact | None):
    """`strategy` with the α-predictor artifact it names loaded into its `policy` field."""
    if strategy.policy is not None or not strategy.artifact:
        return strategy
    if load_artifact is None:
        raise UserError(f"{strategy.name}: the artifact {strategy.artifact} needs the α-predictor loader")
    return dataclasses.replace(strategy, policy=load_artifact(strategy.artifact))


def check_policy_student(policy: AlphaPolicy, identity: str) -> None:
    if policy.student != identity:
        raise UserError(f"α-predictor {policy.source} was built for student '{policy.student}', but the student in use is '{identity}'")
