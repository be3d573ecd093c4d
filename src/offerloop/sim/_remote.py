"""Playing the simulated game against a running service, through its HTTP API, on simulated
time: a backtest or a rehearsal of the whole loop as the game would see it.

The service runs on a manual clock (``offerloop serve --clock manual:<start>``). The
simulation keeps its own clock and mirrors it to the service (``POST /v1/admin/clock``)
before each request that follows a move, so decisions, attribution windows and pipeline runs
all happen at simulated time; the pipeline runs through ``POST /v1/admin/pipeline/run`` at the
simulation's cadence. A day of 2,000 players takes seconds, not a day.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from offerloop._clock import ManualClock, format_ts
from offerloop.sim._runner import DayStats, GameSimulation
from offerloop.sim._world import DAY, World

__all__ = ["Backtest", "ServiceClock"]


class ServiceClock(ManualClock):
    """A manual clock whose moves reach a service's manual clock when :meth:`sync` is called
    (lazily: many moves between two requests cost one call)."""

    def __init__(self, start: float, push: Callable[[float], None]) -> None:
        super().__init__(start)
        self._push = push
        self._pushed = float("-inf")

    def sync(self) -> None:
        """Push the current time to the service if it is later than the last time pushed."""
        now = self.now()
        if now > self._pushed:
            self._push(now)
            self._pushed = now


RETRIES = 30  # a 503 (shed, or a store that did not answer in time) is retried this often
MAX_WAIT = 5.0  # seconds, whatever Retry-After says


def post_retrying(
    http: httpx.Client, url: str, json: Any, sleep: Callable[[float], None] = time.sleep
) -> httpx.Response:
    """POST as a well-behaved game client does: a 503 is retried after its ``Retry-After``
    (at most :data:`MAX_WAIT` s, :data:`RETRIES` times). Events are idempotent by id; a
    retried decision may have been logged once unanswered, which the service counts as an
    offer shown and not bought, as it would for a real client that timed out."""
    for _ in range(RETRIES):
        r = http.post(url, json=json)
        if r.status_code != 503:
            return r
        try:
            wait = float(r.headers.get("Retry-After", "1"))
        except ValueError:
            wait = 1.0
        sleep(min(max(wait, 0.05), MAX_WAIT))
    return r


class _ClockedClient:
    """The simulation's HTTP client: the service's clock is moved before each request."""

    def __init__(self, http: httpx.Client, clock: ServiceClock) -> None:
        self.http = http
        self.clock = clock

    def post(self, url: str, *, json: Any) -> httpx.Response:
        self.clock.sync()
        return post_retrying(self.http, url, json)


@dataclass
class Backtest:
    """``players`` of ``world`` play ``days`` against the service at ``base_url`` (its clock
    manual and at ``start``); the pipeline runs ``runs_per_day`` times a simulated day (the
    last at midnight). ``token``: the service's admin token, if it has one."""

    base_url: str
    world: World
    start: float
    players: int = 2000
    days: int = 14
    runs_per_day: int = 4
    token: str = ""
    campaign: str | None = None
    timeout: float = 600.0

    def run(
        self,
        on_day: Callable[[DayStats], None] | None = None,
        on_run: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[DayStats]:
        """Seed the players' history, then play every day; returns each day's stats. ``on_day`` is
        called after each day, ``on_run`` with each pipeline run's answer. Raises
        ``httpx.HTTPStatusError`` when the service refuses a request."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        with httpx.Client(base_url=self.base_url, timeout=self.timeout, headers=headers) as http:

            def push(ts: float) -> None:
                post_retrying(http, "/v1/admin/clock", {"now": format_ts(ts)}).raise_for_status()

            clock = ServiceClock(self.start, push)
            clock.sync()
            campaign = self.campaign or http.get("/v1/admin/deployments").json()["campaign"]
            sim = GameSimulation(
                _ClockedClient(http, clock), self.world, clock, self.players, campaign
            )

            def pipeline(_ts: float) -> None:
                sim.flush()
                clock.sync()
                r = post_retrying(http, "/v1/admin/pipeline/run", {"campaign": campaign})
                r.raise_for_status()
                if on_run is not None:
                    on_run(r.json())

            sim.seed_history()
            every = DAY / max(1, self.runs_per_day)
            days: list[DayStats] = []
            for day in range(self.days):
                stats = sim.play_day(day, every=every, on_tick=pipeline)
                pipeline(clock.now())
                days.append(stats)
                if on_day is not None:
                    on_day(stats)
            return days
