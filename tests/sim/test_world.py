"""The simulated world makes personalisation pay, by the margins docs/simulator.md states."""

from __future__ import annotations

import numpy as np

from offerloop.sim import SEGMENTS, World
from tests.helpers import campaign


def test_oracle_beats_random_and_the_best_single_offer() -> None:
    world = World(campaign(), seed=42)
    expected = np.array(
        [world.expected_revenue(world.new_player(f"p{i}", 0.0), 0.0) for i in range(5000)]
    )
    oracle = expected.max(axis=1).mean()
    assert oracle >= 2.0 * expected.mean()
    assert oracle >= 1.3 * expected.mean(axis=0).max()


def test_state_changes_purchase_probability() -> None:
    world = World(campaign(), seed=1)
    p = world.new_player("p", 0.0)
    before = world.purchase_probabilities(p, 0.0)
    world.record_purchase(p, 0.0, 9.99)
    just_bought = world.purchase_probabilities(p, 3600.0)
    a_few_days = world.purchase_probabilities(p, 3 * 86400.0)
    assert (just_bought < before).all()
    assert (a_few_days > before).all()


def test_segments_are_a_distribution() -> None:
    assert abs(sum(s.share for s in SEGMENTS) - 1.0) < 1e-9
