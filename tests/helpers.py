"""Synthetic logged data from the simulator's ground truth (uniform random logging)."""

from __future__ import annotations

import numpy as np

from offerloop.campaigns import Campaign, default_campaign_path, load_campaign
from offerloop.features import FeatureValue
from offerloop.policies import LoggedData
from offerloop.sim import Player, World


def player_row(p: Player) -> dict[str, FeatureValue]:
    """What the event log would say about a simulated player (no recency: fresh history)."""
    return {
        "level": float(p.level),
        "is_payer": 1.0 if p.spend else 0.0,
        "total_spend": p.spend,
        "purchases": float(len(p.history)),
        "days_since_last_purchase": 365.0,
        "sessions_7d": 5.0,
        "days_since_install": 30.0,
        "platform": p.platform,
        "country": p.country,
    }


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
        feats.append(player_row(p))
        offers.append(c.offers[a].id)
        rewards.append(c.offers[a].price if buy else 0.0)
        props.append(probs[a])
        expected.append(e)
    data = LoggedData(
        feats, offers, np.array(rewards), np.array(props), np.arange(n, dtype=np.float64)
    )
    return data, np.array(expected), world
