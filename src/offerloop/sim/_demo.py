"""The demo: the whole loop on the embedded backend, day by day, from random to learned."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offerloop._clock import ManualClock, format_ts, parse_rfc3339
from offerloop._errors import BackendUnavailable, Conflict
from offerloop._settings import Settings
from offerloop._system import Offerloop
from offerloop.monitoring import Monitor, write_report
from offerloop.pipeline import run_pipeline
from offerloop.policies import FixedPolicy
from offerloop.serving import InProcessClient, create_app
from offerloop.sim._runner import DayStats, GameSimulation
from offerloop.sim._world import DAY, TasteChange, World

__all__ = ["DEMO_SETTINGS", "DEMO_START", "DemoConfig", "run_demo"]

DEMO_START = parse_rfc3339("2026-03-02T00:00:00Z")
MARKER = "offerloop-demo.marker"
# what the demo (and bench/learning.py, which drives `offerloop serve` the same way) changes
DEMO_SETTINGS: dict[str, Any] = {
    "deployment_refresh_seconds": 0.0,
    # simulated players buy within 3 hours of an offer, so a 4-hour window loses nothing and
    # lets each run judge the decisions of a few hours before
    "attribution_window_hours": 4.0,
    "max_learned_shadows": 2,
    "canary_promote_decisions": 400,
    # LightGBM purchase × price, with and without a 2-day recency half-life: the refresh
    # keeps whichever fits the newest rows best (linear locked in early in some seeds, and
    # gbt only costs time here; docs/architecture.md)
    "learners": ("purchase_gbt", "purchase_gbt@2d"),
    # day one: Thompson sampling under the uninformative prior (the dearest offers first),
    # 20 % uniform; the first learned model takes over at once, watched as a fresh release
    "day_one": "thompson",
    "day_one_explore": 0.2,
    "handover": "release",
    # every run retrains (retrain_min_growth 0): the cadence by evidence saved 30 % of the
    # demo's time but locked seed 7 in at 0.52 of the oracle (docs/architecture.md)
}


@dataclass(frozen=True)
class DemoConfig:
    days: int = 14
    players: int = 2000
    seed: int = 7
    fresh: bool = False
    # A broken candidate (always the cheapest bundle) is forced into canary (replacing any
    # canary) on this day's night, to show the controller rolling it back; -1: never.
    broken_day: int = 4
    # from the start of this day on, a segment's tastes move (sim.TasteChange); -1: never
    taste_change_day: int = -1
    # the dashboard's views as a static file in the data directory ("" for none)
    report: str = "report.html"
    # pipeline runs per simulated day (evenly spaced; the last one at midnight)
    runs_per_day: int = 4


def run_demo(
    settings: Settings,
    config: DemoConfig,
    on_day: Callable[[DayStats], None] | None = None,
    on_decision: Callable[[], None] | None = None,
) -> list[DayStats]:
    """Day 0: ``random`` released, ``rules`` in shadow. ``runs_per_day`` pipeline runs a
    simulated day (the last at midnight): the controller judges the fresh release, the canary
    and every shadow on live logs (share, release, rollback, retirement), then every learner
    is retrained and delivered as the evidence allows (refresh of the released learner,
    canary, or shadow). No promotion logic lives here. On the night of ``broken_day`` a broken
    candidate is forced into canary, and the controller rolls it back."""
    data = Path(settings.data_dir)
    marker = data / MARKER
    if config.fresh and data.exists() and any(data.iterdir()):
        if not marker.exists():
            raise Conflict(f"--fresh would delete {data}, which a demo did not create; refusing")
        shutil.rmtree(data)
    if config.fresh:
        _reset_shared(settings)
    data.mkdir(parents=True, exist_ok=True)
    marker.write_text("created by offerloop demo; --fresh may delete this directory\n")
    settings = settings.replace(
        decision_seed=config.seed,
        **DEMO_SETTINGS,
    )
    clock = ManualClock(DEMO_START)
    system = Offerloop(settings, clock)
    if system.backend.transitions(system.default_campaign):
        system.close()
        where = f"schema {settings.database_schema}" if settings.database_url else str(data)
        raise Conflict(f"{where} already holds a deployment history; use --fresh or another dir")
    system.bootstrap(actor="demo")
    change = (
        TasteChange(DEMO_START + config.taste_change_day * DAY)
        if config.taste_change_day >= 0
        else None
    )
    world = World(system.campaign(None), seed=config.seed, change=change)
    days: list[DayStats] = []
    injected = False
    notes: list[str] = []

    def pipeline(at_night: bool) -> None:
        nonlocal injected
        doc = run_pipeline(system)
        when = "night" if at_night else format_ts(clock.now())[11:16]
        for step in doc["controller"]:
            if at_night or step["action"] != "wait":
                notes.append(
                    f"{when} controller {step['action']} {step['version']}: {step['reason']}"
                )
        r = doc["retrain"]
        if "skipped" in r:
            if at_night:
                notes.append(f"{when} pipeline skipped: {r['skipped']}")
        elif at_night or r["shadowed"]:
            notes.append(
                f"{when} pipeline: {r['winner']} best of {len(r['candidates'])}"
                f"{', ' + r['action'] if r['action'] else ', not deployed'}: {r['reasons'][0]}"
            )
        if (
            config.broken_day >= 0
            and clock.now() >= DEMO_START + (config.broken_day + 1) * DAY
            and not injected
        ):
            injected = True
            broken = _broken_candidate(system)
            system.deployments.canary(
                broken,
                settings.canary_share,
                actor="demo: fault injection",
                reason="forced: always the cheapest bundle",
            )
            notes.append(f"{when} fault injection: broken {broken} forced into canary")

    every = DAY / max(1, config.runs_per_day)
    try:
        with InProcessClient(create_app(system)) as client:
            sim = GameSimulation(client, world, clock, config.players, system.default_campaign)
            sim.seed_history()
            for day in range(config.days):
                st = system.deployments.state(system.default_campaign)
                stats = sim.play_day(
                    day, on_decision, every=every, on_tick=lambda _ts: pipeline(False)
                )
                stats.canary = f"{st.canary} ({st.canary_share:.0%})" if st.canary else ""
                pipeline(True)
                stats.night = " | ".join(notes)
                notes.clear()
                days.append(stats)
                if on_day:
                    on_day(stats)
        if config.report:
            with Monitor(system) as monitor:
                write_report(monitor, data / config.report)
    finally:
        system.close()
    return days


def _broken_candidate(system: Offerloop) -> str:
    """A candidate with a plausible bug: it always offers the cheapest bundle."""
    c = system.campaign(None)
    cheapest = min(range(len(c.offers)), key=lambda i: (c.offers[i].price, c.offers[i].id))
    probs = [0.0] * len(c.offers)
    probs[cheapest] = 1.0
    return system.registry.register(
        c.id, FixedPolicy(c.offer_ids, probs), {"source": "demo fault injection"}
    ).version


def _reset_shared(settings: Settings) -> None:
    """--fresh on PostgreSQL/Redis: drop the demo's schema and keys, never anyone else's."""
    if settings.database_url:
        if not settings.database_schema.startswith("offerloop_demo"):
            raise Conflict(
                f"--fresh would drop schema {settings.database_schema!r}, which is not a demo's"
            )
        from offerloop.backends._postgres import PostgresBackend

        pg = PostgresBackend(settings.database_url, schema=settings.database_schema)
        pg.drop_schema()
        pg.close()
    if settings.redis_url:
        if not settings.redis_prefix.startswith("offerloop_demo"):
            raise Conflict(
                f"--fresh would clear Redis keys {settings.redis_prefix!r}*, not a demo's"
            )
        import redis

        r = redis.Redis.from_url(settings.redis_url)
        try:
            keys = list(r.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
            for i in range(0, len(keys), 1000):
                r.unlink(*keys[i : i + 1000])
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis at {settings.redis_url}: {exc}") from exc
        finally:
            r.close()
