"""The simulator's change of tastes: from its time on, one segment's favourite bundle and
message move, and nothing else does."""

from __future__ import annotations

import numpy as np

from offerloop.sim import TasteChange, World
from tests.helpers import campaign

DAY = 86400.0


def test_a_segments_favourites_move_on_the_given_day() -> None:
    c = campaign()
    world = World(c, seed=1, change=TasteChange(at=7 * DAY, segment="grinder"))
    still = World(c, seed=1)
    grinder = next(
        p
        for p in (world.new_player(f"p{i}", 0.0) for i in range(500))
        if p.segment.name == "grinder"
    )
    before = world.purchase_probabilities(grinder, 6 * DAY)
    after = world.purchase_probabilities(grinder, 8 * DAY)
    bundles = [o.bundle.id for o in c.offers]
    best_before = bundles[int(np.argmax(before * world.prices))]
    best_after = bundles[int(np.argmax(after * world.prices))]
    assert best_before != best_after
    assert np.allclose(before, still.purchase_probabilities(grinder, 6 * DAY))
    # cosmetics, the grinders' new favourite, sell better to them after the change
    cosmetic = np.array([b == "cosmetic" for b in bundles])
    assert after[cosmetic].mean() > 2 * before[cosmetic].mean()
    other = next(
        p for p in (world.new_player(f"q{i}", 0.0) for i in range(500)) if p.segment.name == "whale"
    )
    assert np.allclose(
        world.purchase_probabilities(other, 6 * DAY), world.purchase_probabilities(other, 8 * DAY)
    )
