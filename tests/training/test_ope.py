"""Off-policy estimates against the simulator's ground truth, and their input checks."""

from __future__ import annotations

import numpy as np
import pytest

from offerloop import InvalidInput
from offerloop.policies import EpsilonGreedy, LinearRevenue, LoggedData, RulesPolicy
from offerloop.training import compare, doubly_robust, snips, split_by_time, target_probabilities
from tests.helpers import campaign, logged_data


def _truth(policy: object, data: LoggedData, expected: np.ndarray) -> float:
    return float((policy.act_batch(data.features) * expected).sum(axis=1).mean())  # type: ignore[attr-defined]


def test_estimates_cover_the_true_value_of_a_fixed_policy() -> None:
    c = campaign()
    rules = RulesPolicy.from_campaign(c)
    data, expected, _ = logged_data(8000, seed=5)
    truth = _truth(rules, data, expected)
    model = LinearRevenue(c.offer_ids).fit(logged_data(4000, seed=6)[0])
    for est in (
        snips(target_probabilities(rules, data), data.propensities, data.rewards),
        doubly_robust(rules, model, data),
    ):
        assert est.lower <= truth <= est.upper, (est, truth)
        assert est.ess > 50


def test_paired_comparison_finds_a_real_uplift() -> None:
    c = campaign()
    train, valid = split_by_time(logged_data(12000, seed=8)[0])
    cand = EpsilonGreedy(c.offer_ids, LinearRevenue(c.offer_ids), 0.1).fit(train)
    from offerloop.policies import RandomPolicy

    cand_est, base_est, diff = compare(cand, RandomPolicy(c.offer_ids), cand.model, valid)
    assert diff.lower > 0
    assert abs(diff.value - (cand_est.value - base_est.value)) < 1e-9


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_bad_propensities_are_a_clear_error(bad: float) -> None:
    p = np.array([0.5, bad, 0.5])
    with pytest.raises(InvalidInput, match="propensity of row 1"):
        snips(np.ones(3), p, np.zeros(3))


def test_empty_logs_are_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="no logged decisions"):
        snips(np.ones(0), np.ones(0), np.ones(0))


def test_split_by_time_has_no_look_ahead() -> None:
    data = logged_data(100, seed=1)[0]
    shuffled = data.take(np.random.default_rng(0).permutation(100))
    train, valid = split_by_time(shuffled)
    assert len(train) == 75
    assert len(valid) == 25
    assert train.ts.max() < valid.ts.min()
