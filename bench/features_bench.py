"""Feature benchmarks (docs/benchmarks.md): offline point-in-time training sets, online
lookups, rebuild, memory, ingest throughput and event-to-feature freshness.

    .venv/bin/python bench/features_bench.py [--events 10000000] [--decisions 1000000]

The synthetic log is generated once with DuckDB straight into an embedded-backend SQLite file
under bench/.data/ and reused. The peer (Feast) runs in bench/feast_peer.py, same data.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

from offerloop import ManualClock, Offerloop, format_ts, load_settings
from offerloop.backends._sqlite import SQLiteBackend
from offerloop.events import EventIn
from offerloop.features import OfflineEngine, OnlineFeatures, QueryRows, load_features
from offerloop.features._offline import _sqlite_scanner

DATA = Path(__file__).parent / ".data"
RESULTS = Path(__file__).parent / "results"
T0 = 1_767_225_600.0  # 2026-01-01
SPAN = 60 * 86400.0


def generate(n_events: int, n_decisions: int) -> tuple[Path, Path]:
    """events in SQLite (the embedded backend's schema), decisions as Parquet (player, ts)."""
    DATA.mkdir(exist_ok=True)
    db_dir = DATA / f"events_{n_events}"
    db = db_dir / "offerloop.db"
    dec = DATA / f"decisions_{n_decisions}_{n_events}.parquet"
    players = max(n_events // 100, 10)
    done = db_dir / "complete"
    if not done.exists():
        t = time.perf_counter()
        if db_dir.exists():
            shutil.rmtree(db_dir)
        SQLiteBackend(db_dir, durability="normal").close()  # the backend's own schema
        con = duckdb.connect()
        con.execute(f"LOAD '{_sqlite_scanner()}'")
        con.execute(f"ATTACH '{db}' AS dst (TYPE SQLITE)")
        con.execute(
            f"""
            INSERT INTO dst.events
            WITH g AS (
              SELECT i, hash(i) AS h, hash(i * 7 + 3) AS h2 FROM range({n_events}) t(i)
            ), e AS (
              SELECT i, 'p' || (h % {players}) AS player_id,
                CASE WHEN h2 % 100 < 60 THEN 'session_start' WHEN h2 % 100 < 75 THEN 'level_up'
                     WHEN h2 % 100 < 95 THEN 'purchase' ELSE 'player_profile' END AS type,
                {T0} + (hash(i * 13) % 1000000000) / 1e9 * {SPAN} AS ts,
                h2 FROM g
            )
            SELECT 'e' || i, player_id, type, ts,
              CASE type
                WHEN 'purchase' THEN '{{"amount": ' ||
                  ([0.99, 2.99, 4.99, 9.99, 49.99])[CAST(1 + (h2 // 100) % 5 AS BIGINT)] || '}}'
                WHEN 'level_up' THEN '{{"level": ' || (1 + (h2 // 100) % 80) || '}}'
                WHEN 'player_profile' THEN '{{"country": "' ||
                  (['us', 'de', 'jp', 'br'])[CAST(1 + (h2 // 100) % 4 AS BIGINT)] ||
                  '", "platform": "' ||
                  (['ios', 'android'])[CAST(1 + (h2 // 1000) % 2 AS BIGINT)] || '"}}'
                ELSE '{{}}' END,
              ts + CASE WHEN h2 % 1000 < 10 THEN 3600 * (1 + (h2 // 1000) % 48)
                        ELSE (h2 // 1000) % 5 END,
              NULL, NULL
            FROM e ORDER BY ts + CASE WHEN h2 % 1000 < 10 THEN 3600 * (1 + (h2 // 1000) % 48)
                        ELSE (h2 // 1000) % 5 END
            """
        )
        con.close()
        done.touch()
        print(
            f"generated {n_events:,} events for {players:,} players in "
            f"{time.perf_counter() - t:.0f} s -> {db}"
        )
    if not dec.exists():
        with duckdb.connect() as con:
            con.execute(
                f"COPY (SELECT 'p' || (hash(i * 31) % {players}) AS player_id, "
                f"{T0} + {SPAN} / 2 + (hash(i * 17) % 1000000000) / 1e9 * {SPAN} / 2 AS ts "
                f"FROM range({n_decisions}) t(i)) TO '{dec}' (FORMAT parquet)"
            )
    return db_dir, dec


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_offline(db_dir: Path, dec: Path) -> dict[str, float]:
    fs = load_features()
    with duckdb.connect() as con:
        q = con.execute(f"SELECT player_id, ts FROM '{dec}'").fetchnumpy()
    rows = QueryRows(list(q["player_id"]), np.asarray(q["ts"], dtype=np.float64))
    engine = OfflineEngine(fs)
    engine.use_sqlite(db_dir / "offerloop.db")
    t = time.perf_counter()
    cols = engine.compute(rows)
    elapsed = time.perf_counter() - t
    engine.close()
    n_nonzero = int((cols["purchases_total"] > 0).sum())
    print(
        f"offline: {len(rows):,} rows x {len(fs)} features in {elapsed:.1f} s "
        f"({n_nonzero:,} rows with purchases)"
    )
    return {"offline_seconds": elapsed, "rows": len(rows), "features": len(fs)}


def bench_online(db_dir: Path, lookups: int) -> dict[str, float]:
    fs = load_features()
    backend = SQLiteBackend(db_dir, durability="normal")
    online = OnlineFeatures(fs)
    gc.collect()
    before = rss_mb()
    t = time.perf_counter()
    n = online.rebuild(backend.iter_events(batch=50_000), now=T0 + SPAN + 86400)
    rebuild = time.perf_counter() - t
    gc.collect()
    mem = rss_mb() - before
    players = len(online.store)  # type: ignore[arg-type]
    print(
        f"online rebuild: {n:,} events in {rebuild:.1f} s ({n / rebuild:,.0f} events/s); "
        f"{players:,} players, {mem:.0f} MiB, {mem * 2**20 / players:,.0f} bytes/player"
    )
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in rng.integers(0, players, lookups)]
    now = T0 + SPAN + 86400
    times = []
    for pid in ids:
        t = time.perf_counter()
        online.read(pid, now, {"local_hour": 20})
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    print(
        f"online lookup of {len(fs)} features: p50 {np.percentile(ms, 50):.4f} ms, "
        f"p99 {np.percentile(ms, 99):.4f} ms (n={lookups:,})"
    )
    backend.close()
    return {
        "rebuild_seconds": rebuild,
        "rebuild_events": n,
        "players": players,
        "bytes_per_player": mem * 2**20 / players,
        "lookup_p50_ms": float(np.percentile(ms, 50)),
        "lookup_p99_ms": float(np.percentile(ms, 99)),
    }


def purchase_batch(b: int, size: int, ts: float) -> list[EventIn]:
    """Batch ``b`` of the ingest benchmarks: ``size`` purchases of players cycling over 5,000."""
    return [
        EventIn(
            event_id=f"b{b}-{i}",
            player_id=f"p{(b * size + i) % 5000}",
            type="purchase",
            ts=format_ts(ts),
            properties={"amount": 1.0},
        )
        for i in range(size)
    ]


def bench_ingest(batches: int, batch_size: int) -> dict[str, float]:
    """Durable ingest (fsync per commit) through the core; freshness = time until the
    event's features are readable, i.e. the ingest call (online state updated before it
    returns), measured to the first read that sees it."""
    with tempfile.TemporaryDirectory() as d:
        clock = ManualClock(T0)
        system = Offerloop(load_settings(env={}, data_dir=d), clock)
        lat, fresh = [], []
        total = 0
        t_all = time.perf_counter()
        for b in range(batches):
            events = purchase_batch(b, batch_size, clock.now())
            pid = events[-1].player_id
            before = system.player_features.online.read(pid, clock.now())["purchases_total"]
            t = time.perf_counter()
            system.ingest(events)
            lat.append(time.perf_counter() - t)
            assert system.player_features.online.read(pid, clock.now())["purchases_total"] != before
            fresh.append(time.perf_counter() - t)
            total += batch_size
            clock.advance(1.0)
        elapsed = time.perf_counter() - t_all
        system.close()
    f = np.array(fresh) * 1000
    print(
        f"ingest: {total / elapsed:,.0f} events/s durable (batches of {batch_size}); "
        f"event-to-feature freshness p50 {np.percentile(f, 50):.2f} ms, "
        f"p99 {np.percentile(f, 99):.2f} ms"
    )
    return {
        "ingest_events_per_s": total / elapsed,
        "batch_size": batch_size,
        "freshness_p50_ms": float(np.percentile(f, 50)),
        "freshness_p99_ms": float(np.percentile(f, 99)),
        "ingest_p50_ms": statistics.median(lat) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=20_000)
    args = ap.parse_args()
    db, dec = generate(args.events, args.decisions)
    out = {"events": args.events, "decisions": args.decisions}
    out.update(bench_offline(db, dec))
    out.update(bench_ingest(300, 100))
    out.update(bench_online(db, args.lookups))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"features_{args.events}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"results -> {path}")


if __name__ == "__main__":
    main()
