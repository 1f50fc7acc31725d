"""Decoding strategies: small, pure units that choose tokens inside the one shared loop.

A strategy says which model generates, which rows consult the teacher (decided from the
student's first-token distribution), for how many steps, and how a token is picked from
the two distributions. Strategies hold no I/O: an α-predictor is loaded once when the
run is built and handed in (`predictor.online`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from pipeline.config.strategies import (
    CotDecodingParams, EntropyGateParams, FixedAlphaParams, NoParams, PredictedAlphaParams, SwitchParams, strategy_params,
)
from pipeline.decoding.distributions import at_bfloat16, entropy, jsd
from pipeline.decoding.teacher_next import TeacherNext, mixed_argmax
from pipeline.engine.interface import FeatureRequest
from pipeline.errors import UserError


class AlphaPolicy(Protocol):
    """α per example from the student's prefill: what `PredictedAlpha` is handed."""

    source: str  # where it came from (an artifact directory), recorded in result rows
    student: str  # identity of the student it was built for
    n_tokens: int
    feature_request: FeatureRequest
    needs_teacher: bool  # reads the teacher's first-token distribution too
    decision: dict  # the artifact's policy: kind (learned | fixed), default_alpha, threshold, reason

    def alphas(self, features: torch.Tensor, p_first: torch.Tensor, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        """[B] mixing weights from hidden features [B, D] and the first-token probabilities
        [B, V] of the student (and of the teacher, when `needs_teacher`)."""


@dataclass(frozen=True)
class Strategy:
    """Base: the student decodes greedily alone."""

    # which loop generates: "student" (the shared step loop, over the student's cache),
    # "teacher" (the teacher's engine alone), "branches" (CoT-decoding, pipeline.decoding.cot)
    generator = "student"

    @property
    def teacher_steps(self) -> int | None:
        """Steps that consult the teacher; None = every step."""
        return 0

    @property
    def name(self) -> str:
        return STRATEGY_NAMES[type(self)]

    def params(self) -> dict:
        """The parameters the strategy really runs with (after resolving any artifact)."""
        return {}

    @property
    def feature_request(self) -> FeatureRequest | None:
        """Student hidden states this strategy needs at prefill, if any."""
        return None

    @property
    def reads_teacher_first(self) -> bool:
        """Whether choosing the rows' α needs the teacher's first-token distribution of every row."""
        return False

    def check_student(self, identity: str) -> None:
        """Refuse a student this strategy was not built for (before any decoding)."""

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row mixing weight; rows with α = 0 leave the teacher (or never call it)."""
        return torch.zeros(p_first.shape[0], device=p_first.device)

    @property
    def full_teacher_rows(self) -> bool:
        """Whether every step needs the teacher's whole distribution (not only its top-k)."""
        return False

    @property
    def full_rows_dtype(self) -> str | None:
        """The precision the strategy reads full teacher rows at (None: float32, exactly)."""
        return None

    @property
    def consults_every_row(self) -> bool:
        """Whether every row consults the teacher whatever the student's prefill says (then the
        teacher's prefill can run while the student's does)."""
        return False

    def pick(self, t: int, p_student: torch.Tensor, teacher: TeacherNext, alphas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens for the rows that consult the teacher, and which of them the teacher decided."""
        tokens = mixed_argmax(p_student, teacher, alphas)
        return tokens, torch.ones_like(tokens, dtype=torch.bool)


@dataclass(frozen=True)
class Student(Strategy):
    pass


@dataclass(frozen=True)
class Teacher(Strategy):
    generator = "teacher"


@dataclass(frozen=True)
class FixedAlpha(Strategy):
    """Mix p_s + α(p_t − p_s) for the first `n_tokens` tokens, then the student alone."""

    alpha: float = 1.0
    n_tokens: int = 1

    def __post_init__(self) -> None:
        FixedAlphaParams(self.alpha, self.n_tokens)  # the config's checks

    @property
    def teacher_steps(self) -> int:
        return self.n_tokens

    def params(self) -> dict:
        return {"alpha": self.alpha, "n_tokens": self.n_tokens}

    @property
    def consults_every_row(self) -> bool:
        return self.alpha != 0 and self.n_tokens > 0

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        value = self.alpha if self.n_tokens > 0 else 0.0
        return torch.full((p_first.shape[0],), float(value), device=p_first.device)


@dataclass(frozen=True)
class EntropyGate(FixedAlpha):
    """FixedAlpha only for rows whose student first-token entropy (nats) lies in [lo, hi].
    A gate calibrated by an α-predictor records its `artifact` and the `student` it was
    calibrated on."""

    lo: float = 0.0
    hi: float = math.inf
    artifact: str = ""
    student: str = ""

    def __post_init__(self) -> None:
        EntropyGateParams(self.alpha, self.n_tokens, self.lo, self.hi)

    def params(self) -> dict:
        calibrated = {"artifact": self.artifact} if self.artifact else {}
        return {**super().params(), "lo": self.lo, "hi": self.hi, **calibrated}

    @property
    def consults_every_row(self) -> bool:
        return False  # the band decides per row

    def check_student(self, identity: str) -> None:
        if self.student and self.student != identity:
            raise UserError(f"entropy gate of {self.artifact} was calibrated for student '{self.student}', but the student in use is '{identity}'")

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        h = entropy(p_first)
        inside = (h >= self.lo) & (h <= self.hi)
        return super().row_alphas(p_first) * inside


@dataclass(frozen=True)
class Switch(Strategy):
    """SWITCH: take the teacher's token when JSD(p_t, p_s) > τ0·exp(−λ·t)."""

    tau0: float = 0.1
    lam: float = 0.1

    def __post_init__(self) -> None:
        SwitchParams(self.tau0, self.lam)

    @property
    def teacher_steps(self) -> None:
        return None

    def params(self) -> dict:
        return {"tau0": self.tau0, "lam": self.lam}

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ones(p_first.shape[0], device=p_first.device)

    def threshold(self, t: int) -> float:
        return self.tau0 * math.exp(-self.lam * t)

    @property
    def full_teacher_rows(self) -> bool:
        return True  # the divergence needs both whole distributions

    @property
    def full_rows_dtype(self) -> str:
        # a remote teacher's rows cross at half the bytes; `pick` reads them so on every path
        # for the divergence, and takes the teacher's token from its exact argmax
        return "bfloat16"

    @property
    def consults_every_row(self) -> bool:
        return True

    def pick(self, t, p_student, teacher, alphas):
        p_teacher = at_bfloat16(teacher.full().to(p_student.device))
        take_teacher = jsd(p_teacher, p_student) > self.threshold(t)
        tokens = torch.where(take_teacher, teacher.argmax().to(p_student.device), p_student.argmax(dim=-1))
        return tokens, take_teacher


@dataclass(frozen=True)
class PredictedAlpha(Strategy):
    """α per example from an α-predictor, on the student's prefill features (and, for a
    two-model predictor, the teacher's first distribution); rows predicted α = 0 are
    decoded by the student alone."""

    policy: AlphaPolicy

    @property
    def teacher_steps(self) -> int:
        return self.policy.n_tokens

    def params(self) -> dict:
        decision = self.policy.decision
        return {"artifact": self.policy.source, "n_tokens": self.policy.n_tokens, "policy": decision["kind"],
                "default_alpha": decision["default_alpha"], "threshold": decision["threshold"]}

    def policy_note(self) -> str | None:
        """One line for the console where the artifact decodes every example with its default α."""
        decision = self.policy.decision
        if decision["kind"] != "fixed":
            return None
        return (f"{self.policy.source} uses the fixed policy: every example decodes with α = {decision['default_alpha']:g} "
                f"(the best fixed α of its labels): {decision['reason']}")

    @property
    def feature_request(self) -> FeatureRequest:
        return self.policy.feature_request

    @property
    def reads_teacher_first(self) -> bool:
        return self.policy.needs_teacher

    def check_student(self, identity: str) -> None:
        if self.policy.student != identity:
            raise UserError(f"α-predictor {self.policy.source} was built for student '{self.policy.student}', but the student in use is '{identity}'")

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        return self.policy.alphas(features, p_first, p_teacher).float().to(p_first.device)


@dataclass(frozen=True)
class CotDecoding(Strategy):
    """CoT-decoding (Wang and Zhou, 2024): branch on the k best first tokens, of p_s or (α ≠ 0)
    of p_s + α(p_t − p_s), continue each greedily, keep the path whose answer is decoded most
    confidently. `answer_span` finds the answer in a path's text (the benchmark's extraction,
    handed in by the task: decoding does not read benchmarks)."""

    generator = "branches"
    k: int = 10
    alpha: float = 0.0
    answer_span: Callable[[str], tuple[int, int] | None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        CotDecodingParams(self.k, self.alpha)

    @property
    def teacher_steps(self) -> int:
        return 1 if self.alpha != 0 else 0  # the teacher shapes the branching token only

    def params(self) -> dict:
        return {"k": self.k, "alpha": self.alpha, "n_tokens": self.teacher_steps}


STRATEGIES: dict[str, type[Strategy]] = {
    "student": Student,
    "teacher": Teacher,
    "fixed_alpha": FixedAlpha,
    "entropy_gate": EntropyGate,
    "switch": Switch,
    "predicted_alpha": PredictedAlpha,
    "cot_decoding": CotDecoding,
}
STRATEGY_NAMES = {cls: name for name, cls in STRATEGIES.items()}


def build_strategy(name: str, params: dict | None = None) -> Strategy:
    """A strategy from its config name and parameters; those that need an α-predictor
    artifact are built by `predictor.online.build_strategy`, which loads it once."""
    validated = strategy_params(name, params)
    if getattr(validated, "artifact", ""):
        raise UserError(f"strategy '{name}' with an artifact is built by predictor.online.build_strategy")
    return strategy_from_params(name, validated)


def strategy_from_params(name: str, params, policy: AlphaPolicy | None = None) -> Strategy:
    """The decoding unit for validated config parameters (see `pipeline.config.strategies`)."""
    if isinstance(params, PredictedAlphaParams):
        if policy is None:
            raise UserError("predicted_alpha needs an α-predictor (see predictor.online.build_strategy)")
        return PredictedAlpha(policy)
    if isinstance(params, EntropyGateParams):
        return EntropyGate(params.alpha, params.n_tokens, params.lo, params.hi)
    if isinstance(params, (FixedAlphaParams, SwitchParams, CotDecodingParams)):
        return STRATEGIES[name](**vars(params))
    assert isinstance(params, NoParams)
    return STRATEGIES[name]()
