"""95 % intervals for accuracies and for paired differences between policies.

One helper for every number the project compares: an accuracy gets a Wilson score interval
(good at small n and near 0 or 1, where the normal approximation is not), and a difference
between two policies on the same examples gets a paired bootstrap interval that resamples
examples, seeded, so every run of the same rows prints the same interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95 % interval [lo, hi] over n examples."""

    value: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n}

    @classmethod
    def from_dict(cls, raw: dict) -> "Estimate":
        return cls(float(raw["value"]), float(raw["lo"]), float(raw["hi"]), int(raw["n"]))

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of 0: a difference that is a result."""
        return self.lo > 0 or self.hi < 0

    def format(self, digits: int = 3, signed: bool = False) -> str:
        sign = "+" if signed else ""
        return f"{self.value:{sign}.{digits}f} [{self.lo:{sign}.{digits}f}, {self.hi:{sign}.{digits}f}]"


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion successes / n."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy(correct) -> Estimate:
    """Share of true values in `correct`, with its Wilson interval."""
    values = np.asarray(correct, dtype=bool).ravel()
    lo, hi = wilson_interval(int(values.sum()), len(values))
    return Estimate(float(values.mean()) if len(values) else math.nan, lo, hi, len(values))


def paired_difference(a, b, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> Estimate:
    """mean(a − b) over the same examples, with the percentile interval of a bootstrap that
    resamples examples (a[i] and b[i] stay together: the pairing is what makes small
    differences measurable)."""
    diff = np.asarray(a, dtype=np.float64).ravel() - np.asarray(b, dtype=np.float64).ravel()
    n = len(diff)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    # the resampled means come from counts per example: [samples, n] indices would be 2 GB at n = 10^5
    means = np.empty(samples)
    chunk = max(1, min(256, 10**7 // n))
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=stop - start)
        means[start:stop] = counts @ diff / n
    lo, hi = np.quantile(means, [0.025, 0.975])
    return Estimate(float(diff.mean()), float(lo), float(hi), n)
