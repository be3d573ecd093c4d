"""The doubly robust interval covers the true value of a fixed learned policy in at least
90 % of 50 seeded simulations (ground truth from the simulator; fixed seeds: deterministic)."""

from __future__ import annotations

import numpy as np
import pytest

from offerloop.features import Encoder, load_features
from offerloop.policies import EpsilonGreedy, GBTPurchase
from offerloop.training import doubly_robust
from tests.helpers import campaign, logged_data


@pytest.mark.slow  # hundreds of fitted judges
def test_doubly_robust_interval_covers_the_truth() -> None:
    c = campaign()
    enc = Encoder.of(load_features()).spec()
    prices = [o.price for o in c.offers]
    policy = EpsilonGreedy(c.offer_ids, GBTPurchase(c.offer_ids, prices, enc), 0.1)
    policy.fit(logged_data(5000, seed=1000)[0])
    judge = GBTPurchase(c.offer_ids, prices, enc).fit(logged_data(5000, seed=2000)[0])
    covered = []
    for seed in range(50):
        data, expected, _ = logged_data(1500, seed=seed)
        truth = float((policy.act_batch(data.features) * expected).sum(axis=1).mean())
        est = doubly_robust(policy, judge, data)
        covered.append(est.lower <= truth <= est.upper)
    print(f"coverage {np.mean(covered):.2f}")
    assert np.mean(covered) >= 0.9, np.mean(covered)
