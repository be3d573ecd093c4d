"""Server-side decision latency in the issue-8 configuration (docs/benchmarks.md):

The default 50 features (20 of them the player's offer history, so every decision also
journals its offer_outcome event), 24 offers, a released LightGBM policy, a LightGBM
canary for 20 % of players, and two shadows (LightGBM revenue, ridge); each decision reads the
player's features, scores the serving policy, draws an offer, logs it durably, and hands the
shadows their row. On the embedded backend and on PostgreSQL + Redis, in the same run.

    .venv/bin/python bench/decide_latency.py [--decisions 5000] [--repeat 3] [--profile]

Each backend is measured paced at 1,000 decisions/s (the issue-8 rate: background work runs
between decisions, as in a service) and back to back (the worst case for that contention),
``--repeat`` times; the percentiles reported are the medians over the runs.

``--profile`` also writes a pyinstrument profile (bench/results/decide_profile.txt).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))

from offerloop import ManualClock, Offerloop, format_ts, load_settings
from offerloop.events import EventIn
from offerloop.pipeline import make_policy
from offerloop.training import build_training_set

RESULTS = Path(__file__).parent / "results"
PG = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
T0 = 1_767_225_600.0


def _setup(kind: str, root: Path) -> Offerloop:
    extra: dict[str, Any] = {}
    if kind == "postgres+redis":
        name = f"bench_lat_{int(time.time())}"
        extra = dict(
            database_url=PG, database_schema=name, redis_url=REDIS, redis_prefix=f"{name}:"
        )
    settings = load_settings(
        env={},
        data_dir=str(root / kind),
        decision_seed=1,
        compile_after_decisions=0,  # native code from the first decision: p99 is of it
        **extra,
    ).for_service()  # as `offerloop serve` runs: journaled log, shadows in a child process
    clock = ManualClock(T0)
    system = Offerloop(settings, clock)
    system.bootstrap(actor="bench")
    system.player_features.warm()
    assert len(system.features) == 50, len(system.features)
    c = system.campaign(None)
    rng = np.random.default_rng(0)
    # a day of traffic: sessions and purchases that depend on the offer and the player
    for b in range(40):
        events = []
        for i in range(50):
            p = f"p{rng.integers(2000)}"
            events.append(
                EventIn(
                    event_id=f"s{b}-{i}",
                    player_id=p,
                    type="session_start",
                    ts=format_ts(clock.now()),
                )
            )
        system.ingest(events)
        buys = []
        for i in range(50):
            p = f"p{rng.integers(2000)}"
            d = system.decide(p)
            k = c.offer_ids.index(d.offer.id)
            if rng.random() < 0.02 + 0.1 * ((k + hash(p) % 7) % 5 == 0):
                buys.append(
                    EventIn(
                        event_id=f"b{b}-{i}",
                        player_id=p,
                        type="purchase",
                        ts=format_ts(clock.now() + 60),
                        properties={"amount": d.offer.price, "decision_id": d.record.decision_id},
                    )
                )
            clock.advance(20)
        if buys:
            system.ingest(buys)
    clock.advance(86400 * 2)
    system.flush_shadows()  # the journal into the database
    data = build_training_set(system.backend, c.id, clock.now(), system.window_seconds).data
    from offerloop.features import Encoder

    enc = Encoder.of(system.features)
    versions = {}
    for learner in ("purchase_gbt", "gbt", "linear"):
        policy = make_policy(learner, c, enc, system.settings).fit(data)
        versions[learner] = system.registry.register(c.id, policy).version
    system.deployments.release(versions["purchase_gbt"], actor="bench")
    system.deployments.canary(versions["gbt"], 0.2, actor="bench")
    system.deployments.deploy(versions["linear"], "shadow", actor="bench")
    other = make_policy("gbt", c, enc, system.settings.replace(epsilon=0.2)).fit(data)
    system.deployments.deploy(
        system.registry.register(c.id, other).version, "shadow", actor="bench"
    )
    system.deployments.undeploy("rules-2", actor="bench")
    st = system.deployments.state(c.id)
    assert st.canary, st
    assert len(st.shadows) == 2, st
    return system


def _drop(system: Offerloop) -> None:
    s = system.settings
    system.close()
    if s.database_url:
        import psycopg
        import redis

        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{s.database_schema}" CASCADE')
        r = redis.Redis.from_url(REDIS)
        keys = list(r.scan_iter(match=f"{s.redis_prefix}*", count=1000))
        if keys:
            r.unlink(*keys)


def _run(system: Offerloop, n: int, rate: float | None) -> list[float]:
    """``n`` decisions back to back (``rate`` None) or paced at ``rate`` per second (the
    background work, journal writer and shadow worker, then runs between decisions, as in a
    service at that rate)."""
    lat = []
    nxt = time.perf_counter()
    for i in range(n):
        if rate is not None:
            nxt += 1.0 / rate
            while time.perf_counter() < nxt:
                time.sleep(0.0001)
        t = time.perf_counter()
        system.decide(f"p{i % 2000}")
        lat.append(time.perf_counter() - t)
    return lat


def _stats(lat: list[float]) -> dict[str, float]:
    ms = np.array(lat) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "p999_ms": float(np.percentile(ms, 99.9)),
        "mean_ms": statistics.fmean(ms),
    }


def measure(kind: str, n: int, profile: bool, repeat: int = 3) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as d:
        system = _setup(kind, Path(d))
        try:
            for i in range(200):  # warm caches
                system.decide(f"p{i}")
            system.decider.wait_compiled()  # the models' native code (a few seconds of cc)
            profiler = None
            if profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0002)
                profiler.start()
            runs: dict[str, list[dict[str, float]]] = {"paced_1000_per_s": [], "back_to_back": []}
            for _ in range(repeat):
                runs["paced_1000_per_s"].append(_stats(_run(system, n, 1000.0)))
                runs["back_to_back"].append(_stats(_run(system, n, None)))
            res = {
                mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                for mode, rs in runs.items()
            }
            if profiler is not None:
                profiler.stop()
                RESULTS.mkdir(exist_ok=True)
                out = RESULTS / f"decide_profile_{kind.replace('+', '_')}.txt"
                out.write_text(profiler.output_text(unicode=False, color=False))
                print(f"profile -> {out}")
        finally:
            _drop(system)
    for mode, r in res.items():
        print(
            f"{kind:>15} {mode:>16}: decide p50 {r['p50_ms']:.3f} ms, p95 {r['p95_ms']:.3f} ms, "
            f"p99 {r['p99_ms']:.3f} ms, p99.9 {r['p999_ms']:.3f} ms (medians of {repeat} runs of "
            f"{n}; 50 features, released + canary + 2 shadows)"
        )
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=5000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    out = {
        k: measure(k, args.decisions, args.profile, args.repeat)
        for k in ("embedded", "postgres+redis")
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decide_latency.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
