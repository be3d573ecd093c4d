"""Drift statistics: PSI and Jensen–Shannon behave as their definitions say."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from offerloop.features import load_features
from offerloop.monitoring import drift_report, js_divergence, psi, state_of


def test_psi_is_zero_for_equal_shares_and_grows_with_shift() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    small = psi([25, 25, 25, 25], [30, 25, 25, 20])
    large = psi([25, 25, 25, 25], [70, 10, 10, 10])
    assert 0 < small < 0.1 < 0.25 < large


@given(st.lists(st.integers(0, 1000), min_size=2, max_size=20))
def test_js_is_bounded_and_symmetric(counts: list[int]) -> None:
    other = list(reversed(counts))
    j = js_divergence(counts, other)
    assert 0.0 <= j <= 1.0
    assert j == pytest.approx(js_divergence(other, counts))
    if sum(counts) > 0:
        assert js_divergence(counts, counts) == pytest.approx(0.0, abs=1e-12)


def test_js_of_disjoint_distributions_is_one() -> None:
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)


def test_states_follow_the_thresholds() -> None:
    assert [state_of(x, 0.1, 0.25) for x in (0.0, 0.1, 0.2, 0.25, 3)] == [
        "ok",
        "warn",
        "warn",
        "alert",
        "alert",
    ]


def test_report_finds_the_shifted_feature_and_missing_values() -> None:
    features = load_features()
    rng = np.random.default_rng(0)
    ref = [{"level": int(x), "country": "us"} for x in rng.integers(1, 20, 2000)]
    live = [{"level": int(x), "country": "us"} for x in rng.integers(30, 60, 1000)]
    live += [{"country": "de"} for _ in range(1000)]  # no level: the default
    r = drift_report(features, ref, live, ["a"] * 50 + ["b"] * 50, ["a"] * 100)
    by = {f["feature"]: f for f in r["features"]}
    assert by["level"]["state"] == "alert"
    assert by["country"]["state"] == "alert"
    assert 0 < by["country"]["js"] <= 1
    assert by["level"]["default_share_live"] >= 0.5
    assert by["level"]["default_share_reference"] < 0.1
    assert by["platform"]["state"] == "ok"  # absent in both: all defaults, no drift
    assert r["offers"]["state"] == "alert"
    same = drift_report(features, ref, ref[:1000], ["a"], ["a"])
    assert all(f["state"] == "ok" for f in same["features"])
