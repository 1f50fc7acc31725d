"""The one interval helper every compared number goes through, against closed forms."""
import math

import numpy as np
import pytest

from pipeline.stats.intervals import Estimate, accuracy, paired_difference, wilson_interval


def test_wilson_interval_matches_the_closed_form():
    # Wilson (1927) score interval, z = 1.96: 10 of 100 -> [0.0552, 0.1744]; 0 of 10 -> [0, 0.2775]
    assert wilson_interval(10, 100) == pytest.approx((0.0552, 0.1744), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    lo, hi = wilson_interval(33, 300)
    assert lo < 0.11 < hi and hi - lo == pytest.approx(0.0714, abs=2e-3)  # ±3.5 points at n = 300
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_accuracy_estimate():
    est = accuracy([True] * 12 + [False] * 88)
    assert est.value == pytest.approx(0.12) and est.n == 100 and est.lo < 0.12 < est.hi
    assert Estimate.from_dict(est.to_dict()) == est
    assert est.format() == f"0.120 [{est.lo:.3f}, {est.hi:.3f}]"


def test_paired_bootstrap_agrees_with_the_paired_normal_approximation_on_large_n():
    rng = np.random.default_rng(3)
    n = 4000
    a = rng.random(n) < 0.30
    b = np.where(rng.random(n) < 0.9, a, rng.random(n) < 0.25)  # b mostly agrees with a: pairing narrows the interval
    d = paired_difference(a, b)
    diff = a.astype(float) - b.astype(float)
    half = 1.959964 * diff.std(ddof=1) / math.sqrt(n)
    assert d.value == pytest.approx(diff.mean())
    assert d.lo == pytest.approx(diff.mean() - half, abs=0.15 * half)
    assert d.hi == pytest.approx(diff.mean() + half, abs=0.15 * half)
    # unpaired, the interval of the same difference would be about 2.5 times as wide here
    unpaired = 1.959964 * math.sqrt(a.var() / n + b.var() / n)
    assert half < unpaired / 2


def test_paired_bootstrap_is_seeded_and_says_when_a_difference_is_noise():
    a, b = np.array([1, 0, 1, 1, 0, 1] * 20), np.array([1, 0, 0, 1, 1, 1] * 20)
    assert paired_difference(a, b) == paired_difference(a, b)
    noise = paired_difference(a, b)
    assert noise.value == 0 and not noise.excludes_zero
    assert paired_difference(np.ones(50), np.zeros(50)).excludes_zero
    assert paired_difference(a, a).format(signed=True) == "+0.000 [+0.000, +0.000]"
