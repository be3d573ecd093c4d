"""Always-valid intervals: looked at after every batch, they still cover the truth."""

from __future__ import annotations

import numpy as np
import pytest

from offerloop import load_settings
from offerloop.pipeline._traffic import better_probability, share_for
from offerloop.training import Estimate
from offerloop.training._intervals import sequence_stretch, z_of


def _peeking_errors(stretch: bool, runs: int = 400, n: int = 3000, every: int = 25) -> float:
    """Share of null streams (true mean 0) whose interval excludes 0 at some look."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((runs, n))
    looks = np.arange(every, n + 1, every)
    mean = np.cumsum(x, axis=1)[:, looks - 1] / looks
    se = 1.0 / np.sqrt(looks)
    z = z_of(0.95) * np.array([sequence_stretch(k, 0.05, 1000) if stretch else 1.0 for k in looks])
    wrong = np.abs(mean) > z * se
    return float(wrong.any(axis=1).mean())


def test_always_valid_intervals_survive_peeking_where_fixed_ones_do_not() -> None:
    assert _peeking_errors(stretch=True) <= 0.06
    assert _peeking_errors(stretch=False) >= 0.25  # peeking at a fixed-n interval lies


def test_stretch_is_never_below_one_and_largest_for_few_rows() -> None:
    values = [sequence_stretch(n, 0.05, 1000) for n in (1, 10, 100, 1000, 10**5)]
    assert min(values) >= 1.0
    assert values[0] == max(values)


def test_estimate_always_valid_widens_its_own_interval() -> None:
    e = Estimate(value=0.5, lower=0.1, upper=0.9, se=0.2, ess=300.0, n=400)
    lo, hi = e.always_valid(0.95)
    k = sequence_stretch(400, 0.05, 1000) * z_of(0.95) * 0.2
    assert lo == pytest.approx(0.5 - k)
    assert hi == pytest.approx(0.5 + k)
    assert lo < e.lower
    assert hi > e.upper


def test_canary_share_follows_the_evidence_within_bounds() -> None:
    s = load_settings(env={}, canary_share=0.2, canary_max_share=0.9)
    clear = Estimate(value=1.0, lower=0.5, upper=1.5, se=0.25, ess=500.0, n=800)
    even = Estimate(value=0.0, lower=-1.0, upper=1.0, se=0.5, ess=500.0, n=800)
    worse = Estimate(value=-1.0, lower=-1.5, upper=-0.5, se=0.25, ess=500.0, n=800)
    thin = Estimate(value=1.0, lower=0.5, upper=1.5, se=0.25, ess=5.0, n=800, thin=True)
    assert better_probability(clear) > 0.99
    assert better_probability(worse) < 0.01
    assert better_probability(even) == pytest.approx(0.5)
    assert better_probability(thin) == 0.5  # thin evidence leans neither way
    assert share_for(clear, s) == 0.9
    assert share_for(even, s) == 0.5
    assert share_for(worse, s) == 0.2
    assert share_for(None, s) == 0.2
