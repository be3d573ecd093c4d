"""The demo: the whole loop on the embedded backend, day by day, from random to learned."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from offerloop._clock import ManualClock, parse_rfc3339
from offerloop._errors import Conflict
from offerloop._settings import Settings
from offerloop._system import Offerloop
from offerloop.pipeline import control, retrain
from offerloop.policies import FixedPolicy
from offerloop.serving import InProcessClient, create_app
from offerloop.sim._runner import DayStats, GameSimulation
from offerloop.sim._world import World

__all__ = ["DEMO_START", "DemoConfig", "run_demo"]

DEMO_START = parse_rfc3339("2026-03-02T00:00:00Z")
MARKER = "offerloop-demo.marker"


@dataclass(frozen=True)
class DemoConfig:
    days: int = 14
    players: int = 2000
    seed: int = 7
    fresh: bool = False
    # The demo releases on an 80 % two-sided interval (90 % one-sided): replacing uniform
    # random is a low-risk move, and a day of random logs proves little at 95 %.
    release_confidence: float = 0.8
    # A broken candidate (always the cheapest bundle) is forced into canary after this day,
    # to show the controller rolling it back; -1: never.
    broken_day: int = 8


def run_demo(
    settings: Settings,
    config: DemoConfig,
    on_day: Callable[[DayStats], None] | None = None,
    on_decision: Callable[[], None] | None = None,
) -> list[DayStats]:
    """Day 0: ``random`` released, ``rules`` in shadow. Each night: the pipeline retrains every
    learner, shadows the best and releases it when its off-policy uplift's lower bound is
    positive; the controller judges shadows on live logs (→ canary) and canaries on realised
    revenue (→ released or rolled back). After ``broken_day`` a broken candidate is forced
    into canary, and the controller rolls it back."""
    data = Path(settings.data_dir)
    marker = data / MARKER
    if config.fresh and data.exists() and any(data.iterdir()):
        if not marker.exists():
            raise Conflict(f"--fresh would delete {data}, which a demo did not create; refusing")
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    marker.write_text("created by offerloop demo; --fresh may delete this directory\n")
    settings = settings.replace(
        decision_seed=config.seed,
        deployment_refresh_seconds=0.0,
        release_confidence=config.release_confidence,
        canary_share=0.3,
        canary_promote_decisions=800,
        max_learned_shadows=2,
    )
    clock = ManualClock(DEMO_START)
    system = Offerloop(settings, clock)
    if system.backend.transitions(system.default_campaign):
        system.close()
        raise Conflict(f"{data} already holds a deployment history; use --fresh or another dir")
    system.bootstrap(actor="demo")
    world = World(system.campaign(None), seed=config.seed)
    days: list[DayStats] = []
    try:
        with InProcessClient(create_app(system)) as client:
            sim = GameSimulation(client, world, clock, config.players, system.default_campaign)
            sim.seed_history()
            for day in range(config.days):
                st = system.deployments.state(system.default_campaign)
                stats = sim.play_day(day, on_decision)
                stats.canary = f"{st.canary} ({st.canary_share:.0%})" if st.canary else ""
                notes = []
                # evidence first (judge yesterday's shadows and the canary), then new candidates
                for step in control(system):
                    notes.append(f"controller {step.action}: {step.reason}")
                try:
                    result = retrain(system, actor="pipeline", release_if_better=True)
                    verdict = "released" if result.released else "in shadow"
                    notes.append(
                        f"pipeline: {result.version} best of {len(result.candidates)}, "
                        f"{verdict}: {result.reasons[0]}"
                    )
                except Conflict as exc:
                    notes.append(f"pipeline skipped: {exc.message}")
                if day == config.broken_day:
                    broken = _broken_candidate(system)
                    system.canary(
                        broken,
                        settings.canary_share,
                        actor="demo: fault injection",
                        reason="forced: always the cheapest bundle",
                    )
                    notes.append(f"fault injection: broken {broken} forced into canary")
                stats.night = " | ".join(notes)
                days.append(stats)
                if on_day:
                    on_day(stats)
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
