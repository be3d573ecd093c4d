"""Plays the game against the real service: players act, the game asks ``/v1/decide`` through
HTTP (in-process transport), players answer with purchases, and every night the pipeline
retrains. All time comes from a :class:`~offerloop.ManualClock`, so a day takes seconds."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from offerloop._clock import ManualClock, format_ts
from offerloop.sim._world import DAY, Player, World

__all__ = ["DayStats", "GameSimulation", "HTTPClient"]

FLUSH_AT = 500


class _Response(Protocol):
    def raise_for_status(self) -> Any: ...

    def json(self) -> Any: ...


class HTTPClient(Protocol):
    """What the simulation needs of a client: httpx, httpx2, a TestClient or InProcessClient."""

    def post(self, url: str, *, json: Any) -> _Response: ...


@dataclass
class DayStats:
    day: int
    decisions: int = 0
    released_versions: list[str] = field(default_factory=list)
    expected_released: float = 0.0  # sum of the shown offers' expected revenue
    expected_random: float = 0.0
    expected_oracle: float = 0.0
    realised: float = 0.0  # revenue of purchases answering decisions
    night: str = ""
    canary: str = ""  # the canary serving that day, with its share
    served: dict[str, int] = field(default_factory=dict)  # decisions per model version

    def per_decision(self, total: float) -> float:
        """``total`` divided by the day's decisions (0 when there were none)."""
        return total / self.decisions if self.decisions else 0.0

    def as_json(self) -> dict[str, Any]:
        """The day as JSON-able data; revenues per decision, rounded to 4 decimals."""
        return {
            "day": self.day,
            "decisions": self.decisions,
            "released_version": self.released_versions[-1] if self.released_versions else None,
            "released_versions": self.released_versions,
            "released": round(self.per_decision(self.expected_released), 4),
            "random": round(self.per_decision(self.expected_random), 4),
            "oracle": round(self.per_decision(self.expected_oracle), 4),
            "realised": round(self.per_decision(self.realised), 4),
            "canary": self.canary,
            "served": dict(self.served),
            "night": self.night,
        }


class GameSimulation:
    """Drives ``n_players`` of a :class:`World` against a service reachable by ``client``."""

    def __init__(
        self,
        client: HTTPClient,
        world: World,
        clock: ManualClock,
        n_players: int,
        campaign: str,
    ) -> None:
        self.client = client
        self.world = world
        self.clock = clock
        self.campaign = campaign
        self.start = clock.now()
        self.players = [world.new_player(f"p{i:05d}", self.start) for i in range(n_players)]
        self._ids = itertools.count()
        self._seq = itertools.count()
        self._buffer: list[dict[str, Any]] = []
        self._pending: set[str] = set()
        self.record = False  # keep (decision id, expected revenue of every offer) per decision
        self.observations: dict[str, np.ndarray] = {}

    # -- events --------------------------------------------------------------------------
    def _event(self, p: Player, kind: str, ts: float, **props: Any) -> None:
        self._buffer.append(
            {
                "event_id": f"e{next(self._ids):09d}",
                "player_id": p.id,
                "type": kind,
                "ts": format_ts(ts),
                "properties": props,
            }
        )
        self._pending.add(p.id)
        if len(self._buffer) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Send the buffered events in one ``POST /v1/events``; raises if they are refused."""
        if not self._buffer:
            return
        r = self.client.post("/v1/events", json={"events": self._buffer})
        r.raise_for_status()
        self._buffer.clear()
        self._pending.clear()

    def seed_history(self) -> None:
        """Each player arrives with a profile, a level and past purchases (a backfill)."""
        w = self.world
        for p in self.players:
            self._event(
                p,
                "player_profile",
                p.install_ts,
                platform=p.platform,
                country=p.country,
                install_ts=p.install_ts,
            )
            self._event(p, "level_up", self.start - 3600, level=p.level)
            n = int(w.rng.poisson(p.segment.organic_rate * p.segment.activity * 30))
            for ts in sorted(self.start - w.rng.uniform(0.1, 30, size=n) * DAY):
                amount = w.organic_amount(p)
                w.record_purchase(p, float(ts), amount)
                self._event(p, "purchase", float(ts), amount=amount)
        self.flush()

    # -- one day -------------------------------------------------------------------------
    def play_day(
        self,
        day: int,
        on_decision: Callable[[], None] | None = None,
        every: float = 0.0,
        on_tick: Callable[[float], None] | None = None,
    ) -> DayStats:
        """One day of play. With ``every`` (seconds) and ``on_tick``, ``on_tick(ts)`` is called
        at each multiple of ``every`` within the day (after the day start, before its end),
        with the clock set to that moment and every earlier event flushed: a pipeline that
        runs every few hours sees exactly the traffic before it."""
        w = self.world
        t0 = self.start + day * DAY
        stats = DayStats(day)
        heap: list[tuple[float, int, str, Player, dict[str, Any]]] = []

        def at(ts: float, kind: str, p: Player, **data: Any) -> None:
            heapq.heappush(heap, (ts, next(self._seq), kind, p, data))

        for p in self.players:
            n = w.sessions_today(p)
            if not n:
                continue
            times = np.sort(t0 + w.rng.uniform(60, DAY - 4 * 3600, size=n))
            for ts in times:
                at(float(ts), "session", p)
                if w.rng.random() < p.segment.level_rate:
                    at(float(ts) + 300, "level", p)
            at(float(times[0]) + 120, "store", p)
            if w.rng.random() < p.segment.organic_rate:
                at(float(w.rng.choice(times)) + 600, "organic", p)
        ticks = (
            [t0 + i * every for i in range(1, int(DAY // every) + 1) if i * every < DAY]
            if every > 0 and on_tick is not None
            else []
        )

        def tick_until(ts: float) -> None:
            """Fire every tick up to ``ts``, each after the traffic before it."""
            while ticks and ticks[0] <= ts and on_tick is not None:
                self.flush()
                self.clock.set(ticks[0])
                on_tick(ticks.pop(0))

        while heap:
            ts, _, kind, p, data = heapq.heappop(heap)
            tick_until(ts)
            self.clock.set(ts)
            if kind == "session":
                self._event(p, "session_start", ts)
            elif kind == "level":
                p.level += 1
                self._event(p, "level_up", ts, level=p.level)
            elif kind == "organic":
                amount = w.organic_amount(p)
                w.record_purchase(p, ts, amount)
                self._event(p, "purchase", ts, amount=amount)
            elif kind == "buy":
                w.record_purchase(p, ts, data["amount"])
                self._event(
                    p, "purchase", ts, amount=data["amount"], decision_id=data["decision_id"]
                )
            elif kind == "store":
                self._store_visit(p, ts, stats, at)
                if on_decision:
                    on_decision()
        tick_until(t0 + DAY)
        self.clock.set(t0 + DAY)
        self.flush()
        return stats

    def _store_visit(self, p: Player, ts: float, stats: DayStats, at: Callable[..., None]) -> None:
        if p.id in self._pending:
            self.flush()  # the decision must see this player's latest events
        r = self.client.post(
            "/v1/decide",
            json={
                "player_id": p.id,
                "campaign": self.campaign,
                "context": {"platform": p.platform},
            },
        )
        r.raise_for_status()
        d = r.json()
        w = self.world
        expected = w.expected_revenue(p, ts)
        k = self.world.campaign.index(d["offer_id"])
        if self.record:
            self.observations[d["decision_id"]] = expected
        stats.decisions += 1
        stats.expected_released += float(expected[k])
        stats.expected_random += float(expected.mean())
        stats.expected_oracle += float(expected.max())
        version = d["model_version"]
        if version not in stats.released_versions:
            stats.released_versions.append(version)
        stats.served[version] = stats.served.get(version, 0) + 1
        if w.rng.random() < w.purchase_probabilities(p, ts)[k]:
            delay = min(float(w.rng.exponential(1200.0)), 3 * 3600.0)
            stats.realised += d["price"]
            at(ts + delay, "buy", p, amount=d["price"], decision_id=d["decision_id"])
