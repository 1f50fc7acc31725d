"""Decoding strategies: small units that choose tokens inside the one shared loop.

A strategy says which model generates, which rows consult the teacher (decided
from the student's first-token distribution), for how many steps, and how a
token is picked from the two distributions.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from pipeline.distributions import entropy, jsd, mix
from pipeline.errors import UserError


@dataclass(frozen=True)
class Strategy:
    """Base: the student decodes greedily alone."""

    generator = "student"  # which model's KV cache drives generation

    @property
    def teacher_steps(self) -> int | None:
        """Steps that consult the teacher; None = every step."""
        return 0

    @property
    def name(self) -> str:
        return STRATEGY_NAMES[type(self)]

    def params(self) -> dict:
        return asdict(self)

    @property
    def feature_request(self) -> tuple[tuple[int, ...], str] | None:
        """(layers, pool) of student hidden states this strategy needs at prefill, if any."""
        return None

    def check_student(self, identity: str) -> None:
        """Refuse a student this strategy was not built for (before any decoding)."""

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row mixing weight; rows with α = 0 never call the teacher."""
        return torch.zeros(p_first.shape[0], device=p_first.device)

    def pick(self, t: int, p_student: torch.Tensor, p_teacher: torch.Tensor, alphas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens for the rows that consult the teacher, and which of them the teacher decided."""
        tokens = mix(p_student, p_teacher, alphas).argmax(dim=-1)
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
        _check_alpha_and_n(self.alpha, self.n_tokens)

    @property
    def teacher_steps(self) -> int:
        return self.n_tokens

    def params(self) -> dict:
        return {"alpha": self.alpha, "n_tokens": self.n_tokens}

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        value = self.alpha if self.n_tokens > 0 else 0.0
        return torch.full((p_first.shape[0],), float(value), device=p_first.device)


@dataclass(frozen=True)
class EntropyGate(FixedAlpha):
    """FixedAlpha only for rows whose student first-token entropy (nats) lies in [lo, hi]."""

    lo: float = 0.0
    hi: float = math.inf
    artifact: str = ""  # an α-predictor artifact: take lo, hi, α and N from its calibrated gate

    def __post_init__(self) -> None:
        if self.artifact:
            from predictor.artifact import load_cached

            predictor = load_cached(self.artifact)
            gate = predictor.meta["entropy_gate"]
            for key, value in (("lo", gate["lo"]), ("hi", gate["hi"]), ("alpha", gate["alpha"]), ("n_tokens", predictor.n_tokens)):
                object.__setattr__(self, key, value)
        super().__post_init__()
        if not self.lo <= self.hi:
            raise UserError(f"entropy_gate: lo ({self.lo}) must not exceed hi ({self.hi})")

    def params(self) -> dict:
        calibrated = {"artifact": self.artifact} if self.artifact else {}
        return {**super().params(), "lo": self.lo, "hi": self.hi, **calibrated}

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        h = entropy(p_first)
        inside = (h >= self.lo) & (h <= self.hi)
        return super().row_alphas(p_first) * inside


@dataclass(frozen=True)
class Switch(Strategy):
    """SWITCH: take the teacher's token when JSD(p_t, p_s) > τ0·exp(−λ·t)."""

    tau0: float = 0.1
    lam: float = 0.1

    @property
    def teacher_steps(self) -> None:
        return None

    def __post_init__(self) -> None:
        if self.tau0 < 0 or self.lam < 0:
            raise UserError(f"switch: tau0 and lam must be ≥ 0, got tau0={self.tau0}, lam={self.lam}")

    def params(self) -> dict:
        return {"tau0": self.tau0, "lam": self.lam}

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ones(p_first.shape[0], device=p_first.device)

    def threshold(self, t: int) -> float:
        return self.tau0 * math.exp(-self.lam * t)

    def pick(self, t, p_student, p_teacher, alphas):
        take_teacher = jsd(p_teacher, p_student) > self.threshold(t)
        tokens = torch.where(take_teacher, p_teacher.argmax(dim=-1), p_student.argmax(dim=-1))
        return tokens, take_teacher


@dataclass(frozen=True)
class PredictedAlpha(Strategy):
    """α per example from a trained α-predictor artifact, on the student's prefill features;
    rows predicted α = 0 never call the teacher."""

    artifact: str = ""

    def __post_init__(self) -> None:
        if not self.artifact:
            raise UserError("predicted_alpha: give the predictor artifact directory as 'artifact'")
        self.predictor  # loads (once per process) and validates now

    @property
    def predictor(self):
        from predictor.artifact import load_cached

        return load_cached(self.artifact)

    @property
    def teacher_steps(self) -> int:
        return self.predictor.n_tokens

    def params(self) -> dict:
        return {"artifact": self.artifact, "n_tokens": self.predictor.n_tokens}

    @property
    def feature_request(self) -> tuple[tuple[int, ...], str]:
        spec = self.predictor.feature_spec
        return spec.layers, spec.pool

    def check_student(self, identity: str) -> None:
        built_for = self.predictor.feature_spec.student
        if built_for != identity:
            raise UserError(f"α-predictor {self.artifact} was built for student '{built_for}', but the student in use is '{identity}'")

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        from predictor.features import online_features

        top1 = p_first.max(dim=-1).values
        x = online_features(features.cpu().numpy(), entropy(p_first).cpu().numpy(), top1.cpu().numpy(), self.predictor.feature_spec)
        return torch.from_numpy(self.predictor.predict_alpha(x)).float().to(p_first.device)


def _check_alpha_and_n(alpha: float, n_tokens: int) -> None:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha):
        raise UserError(f"alpha must be a finite number, got {alpha!r}")
    if not isinstance(n_tokens, int) or isinstance(n_tokens, bool) or n_tokens < 0:
        raise UserError(f"n_tokens (N) must be an integer ≥ 0, got {n_tokens!r}")


STRATEGIES: dict[str, type[Strategy]] = {
    "student": Student,
    "teacher": Teacher,
    "fixed_alpha": FixedAlpha,
    "entropy_gate": EntropyGate,
    "switch": Switch,
    "predicted_alpha": PredictedAlpha,
}
STRATEGY_NAMES = {cls: name for name, cls in STRATEGIES.items()}


def build_strategy(name: str, params: dict | None = None) -> Strategy:
    """Strategy from its config name and parameters, with a clear error for bad input."""
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy '{name}' (known: {', '.join(STRATEGIES)})")
    try:
        return STRATEGIES[name](**(params or {}))
    except TypeError as exc:
        raise UserError(f"strategy '{name}': bad parameters {params}: {exc}") from None
