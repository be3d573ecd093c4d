"""A casual game with a known optimum.

Players belong to hidden segments with their own tastes for bundles and messages, price
sensitivity, activity and organic spending. How likely a player is to buy an offer depends on
the segment, the player's own taste, and state the game can see (level, days since the last
purchase, platform, country), the bundle's price and contents, and the message. Because the
world knows each offer's expected revenue for a player at any moment, it can score the oracle
(best offer for each player), the uniform random policy and any other policy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from offerloop.campaigns import Campaign

__all__ = ["SEGMENTS", "Player", "Segment", "TasteChange", "World"]

DAY = 86400.0
COUNTRIES = ("us", "gb", "de", "jp", "fr", "br", "in", "mx")
TIER1 = frozenset({"us", "gb", "de", "jp", "fr"})
RECENT_HOURS = 36.0  # how long a purchase damps the next one (what stale features miss)


@dataclass(frozen=True)
class Segment:
    name: str
    share: float
    base: float  # purchase logit intercept
    price_sensitivity: float  # logit falls by this × log(price)
    bundle_taste: dict[str, float]
    message_taste: dict[str, float]
    activity: float  # chance to play on a given day
    sessions: float  # mean sessions on an active day
    level_rate: float  # chance a session ends with a level up
    organic_rate: float  # chance of an organic purchase on an active day
    organic_amount: tuple[float, float]
    ios: float  # share on iOS
    tier1: float  # share in tier-1 countries
    start_level: tuple[int, int]


SEGMENTS: tuple[Segment, ...] = (
    Segment(
        "non_spender",
        0.45,
        -5.2,
        1.5,
        {"starter": 1.6},
        {"discount": 0.9},
        0.55,
        1.5,
        0.15,
        0.0,
        (0.0, 0.0),
        0.35,
        0.35,
        (1, 12),
    ),
    Segment(
        "minnow",
        0.25,
        -3.0,
        1.0,
        {"boosters": 1.0, "starter": 0.9, "coins": 0.6},
        {"discount": 0.7, "progress": 0.3},
        0.7,
        2.0,
        0.25,
        0.03,
        (0.99, 4.99),
        0.45,
        0.5,
        (5, 25),
    ),
    Segment(
        "grinder",
        0.15,
        -2.6,
        0.8,
        {"boosters": 1.6, "coins": 0.9},
        {"progress": 1.1, "urgency": -0.6},
        0.9,
        3.5,
        0.45,
        0.05,
        (2.99, 9.99),
        0.45,
        0.5,
        (20, 60),
    ),
    Segment(
        "collector",
        0.10,
        -3.0,
        0.6,
        {"cosmetic": 1.9, "gems": 0.8, "mega": 0.4},
        {"social": 1.1, "discount": -0.3},
        0.8,
        2.5,
        0.2,
        0.05,
        (4.99, 9.99),
        0.55,
        0.8,
        (10, 40),
    ),
    Segment(
        "whale",
        0.05,
        -2.4,
        0.3,
        {"mega": 1.6, "gems": 1.0},
        {"urgency": 0.9, "social": 0.2},
        0.9,
        3.0,
        0.3,
        0.15,
        (9.99, 49.99),
        0.75,
        0.85,
        (25, 80),
    ),
)


@dataclass
class Player:
    id: str
    segment: Segment
    platform: str
    country: str
    install_ts: float
    level: int
    bundle_noise: dict[str, float]
    message_noise: dict[str, float]
    last_purchase: float | None = None
    spend: float = 0.0
    history: list[tuple[float, float]] = field(default_factory=list)  # (ts, amount)


@dataclass(frozen=True)
class TasteChange:
    """From ``at`` on, ``segment``'s favourite bundle and message move: its taste for its
    current favourites goes to ``bundle`` and ``message`` and theirs to the old favourites
    (a drift the simulator's ground truth knows, for the loop to recover from)."""

    at: float
    segment: str = "grinder"
    bundle: str = "cosmetic"
    message: str = "social"


def _swap(taste: dict[str, float], to: str) -> dict[str, float]:
    if not taste:
        return dict(taste)
    top = max(taste, key=lambda k: taste[k])
    out = dict(taste)
    out[top], out[to] = taste.get(to, 0.0), taste[top]
    return out


class World:
    """The game's ground truth for one campaign (optionally with a change of tastes)."""

    def __init__(
        self, campaign: Campaign, seed: int = 0, change: TasteChange | None = None
    ) -> None:
        self.change = change
        if change is not None and change.segment not in {x.name for x in SEGMENTS}:
            raise ValueError(f"no segment {change.segment!r}")
        self._changed = {
            x.name: dataclasses.replace(
                x,
                bundle_taste=_swap(x.bundle_taste, change.bundle),
                message_taste=_swap(x.message_taste, change.message),
            )
            for x in SEGMENTS
            if change is not None and x.name == change.segment
        }
        self.campaign = campaign
        self.rng = np.random.default_rng(seed)
        self.prices = np.array([o.price for o in campaign.offers])
        self._log_price = np.log(self.prices)
        self._expensive = self.prices >= 9.0
        self._bundles = [o.bundle.id for o in campaign.offers]
        self._messages = [o.message.id for o in campaign.offers]

    def new_player(self, pid: str, now: float) -> Player:
        """A new player of a random segment, installed 3 to 120 days before ``now``, with tastes
        of its own (noise around its segment's)."""
        rng = self.rng
        shares = np.array([s.share for s in SEGMENTS])
        seg = SEGMENTS[int(rng.choice(len(SEGMENTS), p=shares / shares.sum()))]
        tier1 = rng.random() < seg.tier1
        pool = [c for c in COUNTRIES if (c in TIER1) == tier1]
        return Player(
            id=pid,
            segment=seg,
            platform="ios" if rng.random() < seg.ios else "android",
            country=str(rng.choice(pool)),
            install_ts=now - float(rng.uniform(3, 120)) * DAY,
            level=int(rng.integers(seg.start_level[0], seg.start_level[1] + 1)),
            bundle_noise={b.id: float(rng.normal(0, 0.4)) for b in self.campaign.bundles},
            message_noise={m.id: float(rng.normal(0, 0.25)) for m in self.campaign.messages},
        )

    def purchase_probabilities(self, p: Player, now: float) -> np.ndarray:
        """P(buy | offer shown) for every offer of the campaign, in campaign order."""
        s = p.segment
        if self.change is not None and now >= self.change.at:
            s = self._changed.get(s.name, s)
        logit = np.full(len(self.prices), s.base) - s.price_sensitivity * self._log_price
        logit += [s.bundle_taste.get(b, 0.0) + p.bundle_noise.get(b, 0.0) for b in self._bundles]
        logit += [s.message_taste.get(m, 0.0) + p.message_noise.get(m, 0.0) for m in self._messages]
        # Visible state: progress makes boosters more and the starter pack less attractive.
        lvl = min(p.level, 80)
        logit += [
            0.03 * (lvl - 20) if b == "boosters" else (-0.04 * lvl if b == "starter" else 0.0)
            for b in self._bundles
        ]
        if p.last_purchase is not None:
            hours = (now - p.last_purchase) / 3600.0
            if hours < RECENT_HOURS:
                # a player who just spent is short of budget: expensive bundles lose most
                logit += -1.0 - 1.2 * self._log_price
            elif hours < 7 * 24:
                logit += 0.4
        rich = (0.3 if p.platform == "ios" else 0.0) + (0.3 if p.country in TIER1 else 0.0)
        logit += np.where(self._expensive, rich, 0.0)
        out: np.ndarray = 1.0 / (1.0 + np.exp(-logit))
        return out

    def expected_revenue(self, p: Player, now: float) -> np.ndarray:
        """P(buy | offer shown) × price for every offer of the campaign, in campaign order."""
        out: np.ndarray = self.purchase_probabilities(p, now) * self.prices
        return out

    def record_purchase(self, p: Player, ts: float, amount: float) -> None:
        """Add a purchase to the player's spend, history and last purchase time."""
        p.spend += amount
        p.history.append((ts, amount))
        p.last_purchase = ts if p.last_purchase is None else max(p.last_purchase, ts)

    def sessions_today(self, p: Player) -> int:
        """How many sessions the player plays today (0 on a day it is not active)."""
        if self.rng.random() >= p.segment.activity:
            return 0
        return 1 + int(self.rng.poisson(max(p.segment.sessions - 1.0, 0.0)))

    def organic_amount(self, p: Player) -> float:
        """The amount of a purchase outside the offers, in the segment's range (whole cents)."""
        lo, hi = p.segment.organic_amount
        return round(float(self.rng.uniform(lo, hi)), 2)


def policy_value(expected: np.ndarray, probs: np.ndarray) -> float:
    """Expected revenue of a policy's distribution over offers."""
    return float(np.dot(expected, probs))
