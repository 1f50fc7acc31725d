"""Strategy entries of a config: a name and its parameters, validated without any model.

Each strategy name has a parameter schema here; `pipeline.decoding.strategies` builds the
decoding unit from the validated parameters (plus, for artifact-driven strategies, the
α-predictor loaded once when the run is built).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipeline.config.sections import MAX_ABS_ALPHA, MAX_SAMPLES, is_int
from pipeline.errors import UserError


def check_alpha(alpha: Any, where: str = "alpha") -> None:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha):
        raise UserError(f"{where} must be a finite number, got {alpha!r}")
    if abs(alpha) > MAX_ABS_ALPHA:
        raise UserError(f"{where} must lie in [-{MAX_ABS_ALPHA:g}, {MAX_ABS_ALPHA:g}], got {alpha!r}")


def _check_alpha_and_n(alpha: Any, n_tokens: Any) -> None:
    check_alpha(alpha)
    if not is_int(n_tokens) or n_tokens < 0:
        raise UserError(f"n_tokens (N) must be an integer ≥ 0, got {n_tokens!r}")


@dataclass(frozen=True)
class NoParams:
    pass


@dataclass(frozen=True)
class FixedAlphaParams:
    """Mix p_s + α(p_t − p_s) for the first `n_tokens` tokens."""

    alpha: float = 1.0
    n_tokens: int = 1

    def __post_init__(self) -> None:
        _check_alpha_and_n(self.alpha, self.n_tokens)


@dataclass(frozen=True)
class EntropyGateParams:
    """FixedAlpha only where the student's first-token entropy lies in [lo, hi]; with
    `artifact`, α, N and the band come from an α-predictor's calibrated gate."""

    alpha: float = 1.0
    n_tokens: int = 1
    lo: float = 0.0
    hi: float = math.inf
    artifact: str = ""

    def __post_init__(self) -> None:
        _check_alpha_and_n(self.alpha, self.n_tokens)
        for key in ("lo", "hi"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
                raise UserError(f"entropy_gate: {key} must be a number, got {value!r}")
        if not self.lo <= self.hi:
            raise UserError(f"entropy_gate: lo ({self.lo}) must not exceed hi ({self.hi})")


@dataclass(frozen=True)
class SwitchParams:
    """SWITCH: the teacher's token when JSD > τ0·exp(−λt)."""

    tau0: float = 0.1
    lam: float = 0.1

    def __post_init__(self) -> None:
        for key in ("tau0", "lam"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise UserError(f"switch: tau0 and lam must be finite numbers ≥ 0, got tau0={self.tau0}, lam={self.lam}")


@dataclass(frozen=True)
class PredictedAlphaParams:
    """α per example from an α-predictor artifact."""

    artifact: str = ""

    def __post_init__(self) -> None:
        if not self.artifact:
            raise UserError("predicted_alpha: give the predictor artifact directory as 'artifact'")


@dataclass(frozen=True)
class CotDecodingParams:
    """CoT-decoding: branch on the top-k first tokens (of p_s, or of the mixed distribution
    p_s + α(p_t − p_s) when α ≠ 0), continue each greedily, keep the most confident answer."""

    k: int = 10
    alpha: float = 0.0

    def __post_init__(self) -> None:
        if not is_int(self.k) or not 1 <= self.k <= MAX_SAMPLES:
            raise UserError(f"cot_decoding: k must be an integer from 1 to {MAX_SAMPLES} (branches per example), got {self.k!r}")
        check_alpha(self.alpha, "cot_decoding: alpha")


STRATEGY_PARAMS: dict[str, type] = {
    "student": NoParams,
    "teacher": NoParams,
    "fixed_alpha": FixedAlphaParams,
    "entropy_gate": EntropyGateParams,
    "switch": SwitchParams,
    "predicted_alpha": PredictedAlphaParams,
    "cot_decoding": CotDecodingParams,
}


def strategy_params(name: str, params: dict | None = None):
    """The validated parameter object of strategy `name`; one-line errors for bad input."""
    if name not in STRATEGY_PARAMS:
        raise UserError(f"unknown strategy '{name}' (known: {', '.join(STRATEGY_PARAMS)})")
    try:
        return STRATEGY_PARAMS[name](**(params or {}))
    except TypeError as exc:
        raise UserError(f"strategy '{name}': bad parameters {params}: {exc}") from None


@dataclass(frozen=True)
class StrategySpec:
    """A strategy as the config names it; `label` is its unique id in results."""

    name: str
    params: dict = field(default_factory=dict)

    def validated(self):
        return strategy_params(self.name, self.params)

    @property
    def artifact(self) -> str:
        return str(self.params.get("artifact", ""))

    @property
    def label(self) -> str:
        """Unique, readable id, e.g. `fixed_alpha(alpha=1.0,n_tokens=5)`."""
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({inner})" if inner else self.name
