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
    from offerloop.policies import RandomPolicy

    c = campaign()
    data, expected, _ = logged_data(12000, seed=8)
    train, valid = split_by_time(data)
    cand = EpsilonGreedy(c.offer_ids, LinearRevenue(c.offer_ids), 0.1).fit(train)
    base = RandomPolicy(c.offer_ids)
    cand_est, base_est, diff = compare(cand, base, cand.model, valid)
    held = expected[len(train) :]
    truth = _truth(cand, valid, held) - _truth(base, valid, held)
    assert truth > 0.5  # the learner is really better
    assert diff.lower <= truth <= diff.upper
    assert diff.lower_bound(0.8) > 0  # the pipeline gate's one-sided 80 % bound sees it
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


def test_ips_and_snips_by_hand() -> None:
    from offerloop.training import ips

    target = np.array([1.0, 0.0, 0.5])
    p = np.array([0.5, 0.5, 0.25])
    r = np.array([2.0, 3.0, 4.0])
    est = ips(target, p, r)  # weights 2, 0, 2 → terms 4, 0, 8
    assert est.value == pytest.approx(4.0)
    assert est.ess == pytest.approx(2.0)  # (2+0+2)² / (4+0+4)
    assert est.se == pytest.approx(np.std([4.0, 0.0, 8.0], ddof=1) / np.sqrt(3))
    assert snips(target, p, r).value == pytest.approx(3.0)  # (4 + 8) / (2 + 2)


def test_doubly_robust_by_hand() -> None:
    from offerloop.policies import FixedPolicy, RewardModel

    class Constant(RewardModel):
        def predict_batch(self, rows: object) -> np.ndarray:
            return np.tile([1.0, 2.0], (len(rows), 1))  # type: ignore[arg-type]

    offers = ["a:x", "b:x"]
    data = LoggedData(
        features=[{}, {}, {}],
        offers=["a:x", "b:x", "a:x"],
        rewards=np.array([2.0, 0.0, 0.0]),
        propensities=np.array([0.5, 0.5, 0.5]),
        ts=np.arange(3.0),
    )
    est = doubly_robust(FixedPolicy(offers, [0.75, 0.25]), Constant(offers), data)
    # direct part 1.25; weights 1.5, 0.5, 1.5; residuals 1, -2, -1 → terms 2.75, 0.25, -0.25
    assert est.value == pytest.approx(2.75 / 3)
    assert est.n == 3


def test_missing_propensity_is_a_clear_error() -> None:
    p = np.array([0.5, None, 0.5], dtype=object).astype(float)  # missing → nan
    with pytest.raises(InvalidInput, match="propensity of row 1"):
        snips(np.ones(3), p, np.zeros(3))
