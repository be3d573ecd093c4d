"""Synthetic logged data from the simulator's ground truth (uniform random logging)."""

from __future__ import annotations

import os

import numpy as np

from offerloop.backends import EventRecord
from offerloop.campaigns import Campaign, default_campaign_path, load_campaign
from offerloop.features import FeatureValue, load_features, reference_features
from offerloop.policies import LoggedData
from offerloop.sim import Player, World
from offerloop.testing import wait_healthy as wait_healthy  # the tests' name for it

FEATURES = load_features()


def examples(n: int) -> int:
    """``n`` Hypothesis examples under `make test`; a fifth (at least 5) in the developer loop
    (``HYPOTHESIS_PROFILE=dev``, tests/conftest.py)."""
    return n if os.environ.get("HYPOTHESIS_PROFILE", "full") == "full" else max(5, n // 5)


def player_row(p: Player, now: float = 0.0) -> dict[str, FeatureValue]:
    """The default features of a simulated player, from the events its state implies."""
    events = [
        EventRecord(
            f"{p.id}-profile",
            p.id,
            "player_profile",
            p.install_ts,
            {"platform": p.platform, "country": p.country},
            p.install_ts,
        ),
        EventRecord(f"{p.id}-level", p.id, "level_up", now - 3600, {"level": p.level}, now - 3600),
    ]
    events += [
        EventRecord(f"{p.id}-buy{i}", p.id, "purchase", ts, {"amount": amount}, ts)
        for i, (ts, amount) in enumerate(p.history)
    ]
    return reference_features(FEATURES, events, now)


def fresh_row(p: Player) -> dict[str, FeatureValue]:
    """:func:`player_row` for a player with no purchases yet, without the event fold (fast)."""
    row = dict(FEATURES.defaults)
    row.update(country=p.country, platform=p.platform, level=p.level)
    return row


def campaign() -> Campaign:
    return load_campaign(default_campaign_path())


def logged_data(
    n: int, seed: int = 0, logging: np.ndarray | None = None
) -> tuple[LoggedData, np.ndarray, World]:
    """``n`` decisions logged by ``logging`` probabilities (uniform by default).

    Returns the data, every row's expected revenue per offer, and the world.
    """
    c = campaign()
    world = World(c, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    k = len(c.offers)
    probs = np.full(k, 1.0 / k) if logging is None else logging
    feats, offers, rewards, props, expected = [], [], [], [], []
    for i in range(n):
        p = world.new_player(f"p{i}", 0.0)
        e = world.expected_revenue(p, 0.0)
        a = int(rng.choice(k, p=probs))
        buy = rng.random() < world.purchase_probabilities(p, 0.0)[a]
        feats.append(fresh_row(p) if not p.history else player_row(p))
        offers.append(c.offers[a].id)
        rewards.append(c.offers[a].price if buy else 0.0)
        props.append(probs[a])
        expected.append(e)
    data = LoggedData(
        feats, offers, np.array(rewards), np.array(props), np.arange(n, dtype=np.float64)
    )
    return data, np.array(expected), world
