"""Embedded vs PostgreSQL + Redis, measured in the same run (docs/benchmarks.md, docs/scaling.md).

    .venv/bin/python bench/backends_bench.py [--events 10000000] [--decisions 1000000]

1. Offline: the same point-in-time training set (1 M decision rows x all features over 10 M
   events) computed by DuckDB from the SQLite file and from the PostgreSQL table (DuckDB's
   postgres_scanner). The events are the synthetic log of features_bench.py, copied into a
   PostgreSQL schema of their own by DuckDB.
2. Training set + OPE from the decision log: 50,000 logged decisions read back, attributed and
   evaluated (doubly robust) on each backend.
3. Serving, one process, server-side: decisions/s and ingested events/s, with the PostgreSQL
   transactions and Redis commands each one costs (from the servers' own counters).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.decide_latency import _drop
from bench.features_bench import RESULTS, bench_offline, generate
from offerloop import ManualClock, Offerloop, format_ts, load_settings
from offerloop.backends._postgres import PostgresBackend
from offerloop.events import EventIn
from offerloop.features import OfflineEngine, QueryRows, load_features
from offerloop.features._offline import _bundled_extension
from offerloop.training import build_training_set, compare

PG = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
T0 = 1_767_225_600.0


def pg_copy(db_dir: Path, n_events: int) -> str:
    schema = f"bench_events_{n_events}"
    pg = PostgresBackend(PG, schema=schema)
    (count,) = pg._read("SELECT count(*) FROM events")[0]
    if count != n_events:
        pg.drop_schema()
        pg.close()
        pg = PostgresBackend(PG, schema=schema)
        t = time.perf_counter()
        con = duckdb.connect()
        con.execute(f"LOAD '{_bundled_extension('postgres_scanner')}'")
        con.execute(f"LOAD '{_bundled_extension('sqlite_scanner')}'")
        con.execute(f"ATTACH '{PG}' AS pg (TYPE postgres)")
        con.execute(
            f"INSERT INTO pg.{schema}.events (event_id, player_id, type, ts, properties, "
            "received_at, decision_id) SELECT event_id, player_id, type, ts, properties, "
            f"received_at, decision_id FROM sqlite_scan('{db_dir / 'offerloop.db'}', 'events')"
        )
        con.close()
        with psycopg.connect(PG, autocommit=True) as c:
            c.execute(f"ANALYZE {schema}.events")
        print(f"copied {n_events:,} events into PostgreSQL in {time.perf_counter() - t:.0f} s")
    pg.close()
    return schema


def bench_offline_pg(schema: str, dec: Path) -> float:
    fs = load_features()
    with duckdb.connect() as con:
        q = con.execute(f"SELECT player_id, ts FROM '{dec}'").fetchnumpy()
    rows = QueryRows(list(q["player_id"]), np.asarray(q["ts"], dtype=np.float64))
    engine = OfflineEngine(fs)
    engine.use_postgres(PG, schema)
    t = time.perf_counter()
    engine.compute(rows)
    elapsed = time.perf_counter() - t
    engine.close()
    print(f"offline on PostgreSQL: {len(rows):,} rows x {len(fs)} features in {elapsed:.1f} s")
    return elapsed


def _system(kind: str, tmp: Path, clock: ManualClock) -> Offerloop:
    extra: dict[str, Any] = {}
    if kind == "postgres+redis":
        name = f"bench_{int(time.time())}"
        extra = dict(
            database_url=PG, database_schema=name, redis_url=REDIS, redis_prefix=f"{name}:"
        )
    s = load_settings(env={}, data_dir=str(tmp / kind), decision_seed=1, **extra)
    system = Offerloop(s, clock)
    system.bootstrap(actor="bench")
    system.player_features.warm()  # as `offerloop serve` does before taking traffic
    return system


_COUNTER = redis.Redis.from_url(REDIS)


def _redis_cmds() -> int:
    """Commands the server processed so far; consecutive readings differ by what happened in
    between plus the earlier INFO itself (one connection: no handshake commands)."""
    return int(_COUNTER.info("stats")["total_commands_processed"])


def bench_serving(kind: str, tmp: Path, n_decisions: int, n_batches: int) -> dict[str, float]:
    clock = ManualClock(T0)
    system = _system(kind, tmp, clock)
    try:
        players = [f"p{i}" for i in range(500)]
        # events: batches of 100 purchases over 500 players
        x = getattr(system.backend, "transactions", 0)
        x0, r0 = x, _redis_cmds()
        t = time.perf_counter()
        for b in range(n_batches):
            system.ingest(
                [
                    EventIn(
                        event_id=f"b{b}-{i}",
                        player_id=players[(b * 100 + i) % 500],
                        type="purchase",
                        ts=format_ts(clock.now()),
                        properties={"amount": 4.99},
                    )
                    for i in range(100)
                ]
            )
            clock.advance(1.0)
        ingest_s = time.perf_counter() - t
        x1, r1 = getattr(system.backend, "transactions", 0), _redis_cmds() - 1
        lat = []
        t = time.perf_counter()
        for i in range(n_decisions):
            s0 = time.perf_counter()
            system.decide(players[i % 500])
            lat.append(time.perf_counter() - s0)
            clock.advance(0.5)
        decide_s = time.perf_counter() - t
        x2, r2 = getattr(system.backend, "transactions", 0), _redis_cmds() - 2
        events = n_batches * 100
        # training set + OPE from this backend's logs (decisions and their purchases)
        t = time.perf_counter()
        clock.advance(2 * 86400)
        ts = build_training_set(system.backend, system.default_campaign, clock.now(), 86400.0)
        policy = system.registry.load("rules-2")
        release = system.registry.load("random-1")
        from offerloop.policies import GBTPurchase

        judge = GBTPurchase(
            offers=system.campaign(None).offer_ids,
            prices=[o.price for o in system.campaign(None).offers],
        ).fit(ts.data)
        compare(policy, release, judge, ts.data)
        ope_s = time.perf_counter() - t
    finally:
        _drop(system)
    ms = np.array(lat) * 1000
    out = {
        "events_per_s": events / ingest_s,
        "decisions_per_s": n_decisions / decide_s,
        "decide_p50_ms": float(np.percentile(ms, 50)),
        "decide_p99_ms": float(np.percentile(ms, 99)),
        "pg_xacts_per_event_batch": (x1 - x0) / n_batches if kind != "embedded" else 0.0,
        "pg_xacts_per_decision": (x2 - x1) / n_decisions if kind != "embedded" else 0.0,
        "redis_cmds_per_event": (r1 - r0) / events if kind != "embedded" else 0.0,
        "redis_cmds_per_decision": (r2 - r1) / n_decisions if kind != "embedded" else 0.0,
        "training_set_and_ope_s": ope_s,
        "training_rows": float(len(ts.data)),
    }
    print(
        f"{kind}: {out['decisions_per_s']:,.0f} decisions/s (p50 {out['decide_p50_ms']:.2f} ms, "
        f"p99 {out['decide_p99_ms']:.2f} ms), {out['events_per_s']:,.0f} events/s; per decision "
        f"{out['pg_xacts_per_decision']:.2f} PG transactions, {out['redis_cmds_per_decision']:.2f} "
        f"Redis commands; per event {out['redis_cmds_per_event']:.2f} Redis commands; "
        f"training set + DR on {len(ts.data):,} decisions {ope_s:.1f} s"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--serve-decisions", type=int, default=5000)
    ap.add_argument("--batches", type=int, default=100)
    args = ap.parse_args()
    import tempfile

    out: dict[str, Any] = {"events": args.events, "decisions": args.decisions}
    with tempfile.TemporaryDirectory() as d:
        for kind in ("embedded", "postgres+redis"):
            out[kind] = bench_serving(kind, Path(d), args.serve_decisions, args.batches)
    db, dec = generate(args.events, args.decisions)
    schema = pg_copy(db, args.events)
    out["offline_sqlite_s"] = bench_offline(db, dec)["offline_seconds"]
    out["offline_postgres_s"] = bench_offline_pg(schema, dec)
    ratio = out["offline_postgres_s"] / out["offline_sqlite_s"]
    print(f"offline PostgreSQL / SQLite: {ratio:.2f}x the time")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"backends_{args.events}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"results -> {path}")


if __name__ == "__main__":
    main()
