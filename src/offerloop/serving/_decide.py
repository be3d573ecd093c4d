"""The decision path: features → released policy (draw an offer) → shadows → durable log."""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from offerloop._clock import Clock
from offerloop._errors import Conflict, NotFound
from offerloop.backends import Backend, DecisionRecord, ShadowChoice
from offerloop.campaigns import Campaign, Offer
from offerloop.features import FeatureValue
from offerloop.monitoring import Metrics
from offerloop.policies import Policy
from offerloop.registry import CANARY, RELEASED, SHADOW, Deployments, Registry

__all__ = ["Decider", "Decision", "FeatureSource", "canary_bucket", "new_decision_id"]

FeatureSource = Callable[[str, float, Mapping[str, Any]], dict[str, FeatureValue]]


@dataclass(frozen=True)
class Decision:
    record: DecisionRecord
    offer: Offer


@dataclass(frozen=True)
class _Live:
    generation: int
    released: tuple[str, Policy] | None
    shadows: tuple[tuple[str, Policy], ...]
    checked_at: float
    canary: tuple[str, Policy, float] | None = None


def canary_bucket(player_id: str, campaign: str) -> float:
    """A player's stable position in [0, 1) for a campaign: the canary serves players below
    its share, so a player keeps the same arm while the share is unchanged (and a player in
    a 10 % canary stays in it when the share grows to 20 %)."""
    digest = hashlib.sha256(f"{campaign}\x00{player_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def new_decision_id(ts: float) -> str:
    """Time-ordered and unique across processes: milliseconds + 64 random bits."""
    return f"d{int(ts * 1000):013x}{secrets.token_hex(8)}"


class Decider:
    def __init__(
        self,
        backend: Backend,
        features: FeatureSource,
        campaigns: Mapping[str, Campaign],
        registry: Registry,
        deployments: Deployments,
        clock: Clock,
        metrics: Metrics,
        refresh_seconds: float = 0.2,
        seed: int | None = None,
    ) -> None:
        self.backend = backend
        self.features = features
        self.campaigns = campaigns
        self.registry = registry
        self.deployments = deployments
        self.clock = clock
        self.metrics = metrics
        self.refresh_seconds = refresh_seconds
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self._live: dict[str, _Live] = {}

    def campaign(self, campaign_id: str) -> Campaign:
        try:
            return self.campaigns[campaign_id]
        except KeyError:
            raise NotFound(
                f"unknown campaign {campaign_id!r} (known: {', '.join(sorted(self.campaigns))})"
            ) from None

    def invalidate(self) -> None:
        """Forget the cached deployment state (the next decision re-reads it)."""
        self._live.clear()

    def live(self, campaign: str) -> _Live:
        """Deployment state, re-read at most every ``refresh_seconds`` of real time."""
        cur = self._live.get(campaign)
        mono = time.monotonic()
        if cur is not None and mono - cur.checked_at < self.refresh_seconds:
            return cur
        gen = self.backend.generation()
        if cur is not None and cur.generation == gen:
            cur = _Live(gen, cur.released, cur.shadows, mono, cur.canary)
        else:
            st = self.deployments.state(campaign)
            released = (st.released, self.registry.load(st.released)) if st.released else None
            shadows = tuple((v, self.registry.load(v)) for v in st.shadows)
            canary = (
                (st.canary, self.registry.load(st.canary), st.canary_share) if st.canary else None
            )
            cur = _Live(st.generation, released, shadows, mono, canary)
        self._live[campaign] = cur
        return cur

    def _draw(self, p: np.ndarray[Any, np.dtype[np.float64]]) -> int:
        with self._rng_lock:
            return int(self._rng.choice(len(p), p=p))

    def decide(
        self, player_id: str, campaign_id: str, context: Mapping[str, Any] | None = None
    ) -> Decision:
        started = time.perf_counter()
        campaign = self.campaign(campaign_id)
        context = dict(context or {})
        now = self.clock.now()
        t0 = time.perf_counter()
        row = self.features(player_id, now, context)
        self.metrics.feature_duration.observe(time.perf_counter() - t0)
        live = self.live(campaign.id)
        if live.released is None:
            raise Conflict(f"campaign {campaign.id!r} has no released version")
        version, policy = live.released
        mode, fallback, p = RELEASED, "", None
        t0 = time.perf_counter()
        if live.canary is not None and canary_bucket(player_id, campaign.id) < live.canary[2]:
            # a failing canary must not fail the player: the release serves, the log says why
            try:
                p = _checked(live.canary[1].act(row), len(campaign.offers), live.canary[0])
                version, mode = live.canary[0], CANARY
            except Exception as exc:  # any bug in a candidate model
                fallback = f"canary {live.canary[0]} failed: {exc}"[:500]
                self.metrics.policy_errors.labels(campaign.id, live.canary[0], CANARY).inc()
                t0 = time.perf_counter()
        if p is None:
            p = _checked(policy.act(row), len(campaign.offers), version)
        score_ms = (time.perf_counter() - t0) * 1000.0
        idx = self._draw(p)
        if p[idx] < p.max():
            self.metrics.exploration.labels(campaign.id, version).inc()
        shadows = []
        for sv, sp in live.shadows:
            try:
                q = _checked(sp.act(row), len(campaign.offers), sv)
            except Exception:  # a shadow that fails is left out of this decision, and counted
                self.metrics.policy_errors.labels(campaign.id, sv, SHADOW).inc()
                continue
            j = self._draw(q)
            shadows.append(ShadowChoice(sv, campaign.offers[j].id, float(q[j]), float(q[idx])))
            self.metrics.shadow_scores.labels(campaign.id, sv).inc()
        offer = campaign.offers[idx]
        record = DecisionRecord(
            decision_id=new_decision_id(now),
            ts=now,
            player_id=player_id,
            campaign=campaign.id,
            offer_id=offer.id,
            model_version=version,
            mode=mode,
            propensity=float(p[idx]),
            features=row,
            context=context,
            shadows=tuple(shadows),
            score_ms=score_ms,
            fallback=fallback,
        )
        self.backend.append_decision(record)
        self.metrics.decisions.labels(campaign.id, version, mode, offer.id).inc()
        self.metrics.decision_duration.labels(campaign.id).observe(time.perf_counter() - started)
        return Decision(record, offer)


def _checked(
    p: np.ndarray[Any, np.dtype[np.float64]], k: int, version: str
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A policy's output must be k non-negative finite probabilities summing to 1."""
    p = np.asarray(p, dtype=np.float64)
    total = float(p.sum()) if p.shape == (k,) else math.nan
    if not (math.isfinite(total) and abs(total - 1.0) < 1e-6 and (p >= 0).all()):
        raise Conflict(f"version {version} returned invalid probabilities; it cannot serve")
    out: np.ndarray[Any, np.dtype[np.float64]] = p / total
    return out
