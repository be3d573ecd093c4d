"""Past one machine (issue 18): the offline training set, durable ingest and the columnar
store's export, in one run, against Feast and a hand-written DuckDB query on the same data.

    .venv/bin/python bench/scale.py [--events 10000000] [--decisions 1000000] [--rounds 3]
                                    [--no-feast] [--ingest-batches 200]

Data: bench/features_bench.py's synthetic log (N events of N/100 players, generated once into
bench/.data and reused) and its decisions; the 20 features of the default set that read these
events (the offer-history features read events this log has none of, so they are left out).

* **export**: the columnar store (``features._columnar``) built from the SQLite log, as
  `offerloop serve` builds it in the background (timed once, when it is first built);
* **offline**, in interleaved rounds (medians): offerloop's engine on the columnar store;
  the hand-written DuckDB query (:data:`HAND_QUERY`: a range join for the windows and ASOF
  joins on running totals for the rest, what one would write for exactly these 20 features)
  over the same Parquet files, the speed limit on one machine; Feast's
  ``get_historical_features`` (its DuckDB offline store) given the features already
  aggregated per event (computed by offerloop, not timed: Feast joins, it does not
  aggregate raw events). offerloop's engine reading the SQLite log itself is timed once.
  The hand query's values are compared with offerloop's on every cell.
* **ingest**: durable (fsync per commit) ingest through the core, batches of 1,000.

Results in bench/results/scale_<N>.json; restarts are bench/restart.py's.
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

import duckdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench.*

from bench.features_bench import RESULTS, bench_ingest, generate, purchase_batch
from offerloop import ManualClock
from offerloop.backends._sqlite import SQLiteBackend
from offerloop.features import (
    ColumnarStore,
    FeatureSet,
    OfferHistory,
    OfflineEngine,
    QueryRows,
    columnar_properties,
    load_features,
)

HOUR, DAY = 3600.0, 86400.0

# The limit: one query over the store's Parquet files (typed columns, integer player keys),
# written for these 20 features. Windowed aggregates: one range join per event type over the
# longest window, narrower windows as filters. Lifetime aggregates, profile attributes and
# time-since-last: running totals per player ordered by the moment an event became known
# (max(ts, received_at); RANGE framing so that events known at the same moment count
# together), then an ASOF join of each row with the last moment <= its time.
HAND_QUERY = """
WITH ev AS (
  SELECT pkey, type, ts, received_at, event_id, greatest(ts, received_at) AS v,
         "n:amount" AS amount, "n:level" AS level,
         "s:country" AS country, "s:platform" AS platform
  FROM read_parquet($files)
),
pw AS (
  SELECT q.row_id,
    count(*) FILTER (WHERE e.ts >= q.t - 86400) AS purchases_24h,
    count(*) FILTER (WHERE e.ts >= q.t - 604800) AS purchases_7d,
    sum(e.amount) AS spend_30d, max(e.amount) AS max_purchase_30d,
    min(e.amount) AS min_purchase_30d, count(*) FILTER (WHERE e.amount >= 20) AS big_30d,
    count(DISTINCT e.amount) AS distinct_30d
  FROM q JOIN ev e ON e.type = 'purchase' AND e.pkey = q.pkey AND e.ts <= q.t
    AND e.received_at <= q.t AND e.ts >= q.t - 2592000
  GROUP BY q.row_id
),
sw AS (
  SELECT q.row_id,
    count(*) FILTER (WHERE e.ts >= q.t - 3600) AS sessions_1h,
    count(*) FILTER (WHERE e.ts >= q.t - 86400) AS sessions_24h,
    count(*) AS sessions_7d
  FROM q JOIN ev e ON e.type = 'session_start' AND e.pkey = q.pkey AND e.ts <= q.t
    AND e.received_at <= q.t AND e.ts >= q.t - 604800
  GROUP BY q.row_id
),
lw AS (
  SELECT q.row_id, count(*) AS level_ups_7d
  FROM q JOIN ev e ON e.type = 'level_up' AND e.pkey = q.pkey AND e.ts <= q.t
    AND e.received_at <= q.t AND e.ts >= q.t - 604800
  GROUP BY q.row_id
),
pr AS (
  SELECT DISTINCT pkey, v,
    count(*) OVER w AS n, sum(amount) OVER w AS total, avg(amount) OVER w AS mean,
    max(ts) OVER w AS last_ts
  FROM ev WHERE type = 'purchase'
  WINDOW w AS (PARTITION BY pkey ORDER BY v RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
sr AS (
  SELECT DISTINCT pkey, v, max(ts) OVER w AS last_ts
  FROM ev WHERE type = 'session_start'
  WINDOW w AS (PARTITION BY pkey ORDER BY v RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
lr AS (
  SELECT DISTINCT pkey, v, arg_max(level, {'ts': ts, 'id': event_id}) OVER w AS level
  FROM ev WHERE type = 'level_up' AND level IS NOT NULL
  WINDOW w AS (PARTITION BY pkey ORDER BY v RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
cr AS (
  SELECT DISTINCT pkey, v,
    arg_max(country, CASE WHEN country IS NOT NULL THEN {'ts': ts, 'id': event_id} END)
      OVER w AS country,
    arg_max(platform, CASE WHEN platform IS NOT NULL THEN {'ts': ts, 'id': event_id} END)
      OVER w AS platform
  FROM ev WHERE type = 'player_profile'
  WINDOW w AS (PARTITION BY pkey ORDER BY v RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT q.row_id,
  coalesce(cr.country, 'unknown') AS country, coalesce(cr.platform, 'unknown') AS platform,
  coalesce(CAST(lr.level AS BIGINT), 1) AS level, coalesce(lw.level_ups_7d, 0) AS level_ups_7d,
  coalesce(pr.n, 0) AS purchases_total, coalesce(pw.purchases_24h, 0) AS purchases_24h,
  coalesce(pw.purchases_7d, 0) AS purchases_7d, coalesce(pr.total, 0.0) AS spend_total,
  coalesce(pw.spend_30d, 0.0) AS spend_30d, coalesce(pr.mean, 0.0) AS mean_purchase,
  coalesce(pw.max_purchase_30d, 0.0) AS max_purchase_30d,
  coalesce(pw.min_purchase_30d, 0.0) AS min_purchase_30d,
  coalesce(pw.big_30d, 0) AS big_purchases_30d,
  coalesce(pw.distinct_30d, 0) AS distinct_amounts_30d,
  coalesce((q.t - pr.last_ts) / 3600, 8760.0) AS hours_since_purchase,
  coalesce(sw.sessions_1h, 0) AS sessions_1h, coalesce(sw.sessions_24h, 0) AS sessions_24h,
  coalesce(sw.sessions_7d, 0) AS sessions_7d,
  coalesce((q.t - sr.last_ts) / 3600, 8760.0) AS hours_since_session,
  q.local_hour
FROM q
LEFT JOIN pw USING (row_id) LEFT JOIN sw USING (row_id) LEFT JOIN lw USING (row_id)
ASOF LEFT JOIN pr ON q.pkey = pr.pkey AND q.t >= pr.v
ASOF LEFT JOIN sr ON q.pkey = sr.pkey AND q.t >= sr.v
ASOF LEFT JOIN lr ON q.pkey = lr.pkey AND q.t >= lr.v
ASOF LEFT JOIN cr ON q.pkey = cr.pkey AND q.t >= cr.v
ORDER BY q.row_id
"""


def features() -> FeatureSet:
    """The default features that read this log's events (and the request's local hour)."""
    fs = load_features()
    return FeatureSet([f for f in fs if not isinstance(f, OfferHistory)])


def export(db_dir: Path, fs: FeatureSet) -> tuple[ColumnarStore, dict[str, float]]:
    backend = SQLiteBackend(db_dir, durability="normal")
    store = ColumnarStore(db_dir / "columnar", columnar_properties(fs))
    t = time.perf_counter()
    result = store.sync(backend, batch=50_000)
    synced = time.perf_counter() - t
    merged = store.compact()
    compacted = time.perf_counter() - t - synced
    backend.close()
    out: dict[str, float] = {"store_events": float(len(store))}
    if result.events:  # built now (else: built by an earlier run, reused)
        out.update(
            export_seconds=synced,
            export_events_per_s=result.events / synced,
            compact_seconds=compacted,
            compacted_files=merged,
        )
        print(
            f"columnar store: {result.events:,} events exported in {synced:.0f} s "
            f"({result.events / synced:,.0f} events/s), {merged} files merged in "
            f"{compacted:.0f} s",
            flush=True,
        )
    return store, out


def hand(store: ColumnarStore, rows: QueryRows, hours: np.ndarray) -> dict[str, np.ndarray]:
    con = duckdb.connect()
    con.register(
        "_q",
        {
            "row_id": np.arange(len(rows), dtype=np.int64),
            "pkey": store.player_keys(rows.player_ids),
            "t": np.asarray(rows.ts, dtype=np.float64),
            "local_hour": hours,
        },
    )
    con.execute("CREATE TEMP TABLE q AS SELECT * FROM _q")
    out = con.execute(HAND_QUERY, {"files": [str(p) for p in store.files()]}).fetchnumpy()
    con.close()
    return {k: np.asarray(v) for k, v in out.items()}


def same(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], names: list[str]) -> int:
    """Cells that differ (floats up to summation order)."""
    bad = 0
    for n in names:
        a, b = ours[n], theirs[n]
        if a.dtype == object or b.dtype == object:
            bad += int(np.sum(a.astype(object) != b.astype(object)))
        else:
            bad += int(np.sum(~np.isclose(a.astype(float), b.astype(float), rtol=1e-9)))
    return bad


class FeastPeer:
    """Feast's point-in-time join of the per-event pre-aggregated table: the table and the
    feature repository are built once (untimed: another team's ETL), each :meth:`join` is timed."""

    def __init__(self, fs: FeatureSet, store: ColumnarStore, rows: QueryRows, repo: Path) -> None:
        import pandas as pd
        from feast import Entity, FeatureStore, FeatureView, Field, FileSource
        from feast.types import Float64, Int64, String

        from bench.feast_peer import FEATURE_STORE_YAML, _stamps

        feats = [f for f in fs if f.kind != "context"]
        with duckdb.connect() as con:
            ev = con.execute(
                "SELECT pkey, greatest(ts, received_at) AS v FROM read_parquet($f)",
                {"f": [str(p) for p in store.files()]},
            ).fetchnumpy()
        ids = store.player_ids()
        snap_rows = QueryRows(list(ids[ev["pkey"]]), np.asarray(ev["v"], dtype=float))
        engine = OfflineEngine(fs)
        engine.use_columnar(store)
        t = time.perf_counter()
        snap = engine.compute(snap_rows)
        engine.close()
        print(
            f"(untimed) Feast's pre-aggregated table: {len(snap_rows):,} rows in "
            f"{time.perf_counter() - t:.0f} s",
            flush=True,
        )
        table: dict[str, Any] = {
            "player_id": snap_rows.player_ids,
            "event_timestamp": _stamps(pd, snap_rows.ts),
        }
        table.update({f.name: snap[f.name] for f in feats})
        pd.DataFrame(table).to_parquet(repo / "snap.parquet")
        del table, snap
        (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML.format(dir=repo))
        player = Entity(name="player", join_keys=["player_id"])
        types = {"int": Int64, "float": Float64, "category": String}
        view = FeatureView(
            name="player_features",
            entities=[player],
            schema=[Field(name=f.name, dtype=types[f.type]) for f in feats],
            source=FileSource(path=str(repo / "snap.parquet"), timestamp_field="event_timestamp"),
            online=False,
            ttl=None,
        )
        self.store = FeatureStore(repo_path=str(repo))
        self.store.apply([player, view])
        self.entity_df = pd.DataFrame(
            {"player_id": rows.player_ids, "event_timestamp": _stamps(pd, rows.ts)}
        )
        self.refs = [f"player_features:{f.name}" for f in feats]

    def join(self) -> float:
        t = time.perf_counter()
        self.store.get_historical_features(entity_df=self.entity_df, features=self.refs).to_df()
        return time.perf_counter() - t


def ingest_through_log(batches: int, size: int, url: str) -> dict[str, float]:
    """Ingest acknowledged by NATS JetStream (one local server, one replica: the machine's),
    then the consumers' commit of all of it to the embedded database."""
    import uuid

    from offerloop import Offerloop, load_settings
    from offerloop.backends._nats import NatsLog

    stream = f"BENCH-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as d:
        clock = ManualClock(1_767_225_600.0)
        system = Offerloop(load_settings(env={}, data_dir=d, log_url=url, log_stream=stream), clock)
        t = time.perf_counter()
        for b in range(batches):
            system.ingest(purchase_batch(b, size, clock.now()))
            clock.advance(1.0)
        acked = time.perf_counter() - t
        system.commit_journals()
        committed = time.perf_counter() - t
        log = system.replicated
        system.close()
        if isinstance(log, NatsLog):
            again = NatsLog(url, stream)
            again.drop()
            again.close()
    n = batches * size
    print(
        f"ingest through JetStream: {n / acked:,.0f} events/s acknowledged (batches of {size}), "
        f"{n / committed:,.0f} events/s through to the database",
        flush=True,
    )
    return {"log_ingest_acked_per_s": n / acked, "log_ingest_committed_per_s": n / committed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-feast", action="store_true", help="without the bench group's Feast")
    ap.add_argument("--no-log", action="store_true", help="skip the engine on the SQLite log")
    ap.add_argument("--ingest-batches", type=int, default=200)
    ap.add_argument(
        "--log-url", default="nats://127.0.0.1:4222", help="NATS JetStream ('' to skip)"
    )
    args = ap.parse_args()
    db_dir, dec = generate(args.events, args.decisions)
    fs = features()
    out: dict[str, Any] = {"events": args.events, "decisions": args.decisions}
    store, exported = export(db_dir, fs)
    out.update(exported)
    with duckdb.connect() as con:
        q = con.execute(f"SELECT player_id, ts FROM '{dec}'").fetchnumpy()
    hours = (np.asarray(q["ts"]) // HOUR % 24).astype(np.float64)
    rows = QueryRows(
        list(q["player_id"]),
        np.asarray(q["ts"], dtype=np.float64),
        [{"local_hour": h} for h in hours.tolist()],
    )
    out["features"] = len(fs.names)
    with tempfile.TemporaryDirectory() as repo:
        feast = None if args.no_feast else FeastPeer(fs, store, rows, Path(repo))
        ours_t, hand_t, feast_t = [], [], []
        for r in range(args.rounds):  # interleaved: each round times all of them
            engine = OfflineEngine(fs)
            engine.use_columnar(store)
            t = time.perf_counter()
            ours = engine.compute(rows)
            ours_t.append(time.perf_counter() - t)
            engine.close()
            t = time.perf_counter()
            theirs = hand(store, rows, hours)
            hand_t.append(time.perf_counter() - t)
            if r == 0:
                out["cells_differing_from_hand_query"] = same(ours, theirs, fs.names)
            del ours, theirs
            line = (
                f"round {r + 1}: offerloop (columnar) {ours_t[-1]:.1f} s, hand-written DuckDB "
                f"query {hand_t[-1]:.1f} s"
            )
            if feast is not None:
                feast_t.append(feast.join())
                line += f", Feast get_historical_features {feast_t[-1]:.1f} s"
            print(line, flush=True)
    print(f"cells differing from the hand query: {out['cells_differing_from_hand_query']}")
    out.update(
        offerloop_columnar_s=ours_t,
        hand_query_s=hand_t,
        offerloop_over_hand=statistics.median(ours_t) / statistics.median(hand_t),
    )
    if feast_t:
        out["feast_join_s"] = feast_t
        out["feast_over_offerloop"] = statistics.median(feast_t) / statistics.median(ours_t)
    if not args.no_log:
        engine = OfflineEngine(fs)
        engine.use_sqlite(db_dir / "offerloop.db")
        t = time.perf_counter()
        engine.compute(rows)
        out["offerloop_sqlite_log_s"] = time.perf_counter() - t
        engine.close()
        print(f"offerloop reading the SQLite log itself: {out['offerloop_sqlite_log_s']:.1f} s")
    out.update(bench_ingest(args.ingest_batches, 1000))
    if args.log_url:
        out.update(ingest_through_log(args.ingest_batches, 1000, args.log_url))
    print(json.dumps(out, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scale_{args.events}.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
