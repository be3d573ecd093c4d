"""offerloop's feature engines against Feast's, on the same data, in the same run.

    .venv/bin/python bench/feast_peer.py [--events 1000000] [--decisions 100000]

Feast does not compute windowed aggregations over raw events when it builds a training set:
its `get_historical_features` point-in-time-joins a table that some other job has already
aggregated. So Feast gets that table for free here: one row per event with every feature's
value as of the moment the event became known (computed by offerloop's engine, not timed),
and only its point-in-time join is timed. offerloop is timed computing the features from the
raw events. Online, Feast's SQLite online store (after `materialize`) is read for one player's
20 features, against offerloop's in-process state, both p50/p99.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench.*

from bench.features_bench import RESULTS, SPAN, T0, generate
from offerloop.backends._sqlite import SQLiteBackend
from offerloop.features import Context, OfflineEngine, OnlineFeatures, QueryRows, load_features

FEATURE_STORE_YAML = """
project: offerloop_bench
registry: {dir}/registry.db
provider: local
offline_store:
  type: duckdb
online_store:
  type: sqlite
  path: {dir}/online.db
entity_key_serialization_version: 3
"""


def main() -> None:
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64, Int64, String

    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--decisions", type=int, default=100_000)
    ap.add_argument("--lookups", type=int, default=2000)
    args = ap.parse_args()
    db_dir, dec = generate(args.events, args.decisions)
    fs = load_features()
    feats = [f for f in fs if not isinstance(f, Context)]
    with duckdb.connect() as con:
        q = con.execute(f"SELECT player_id, ts FROM '{dec}'").fetchnumpy()
    rows = QueryRows(list(q["player_id"]), np.asarray(q["ts"], dtype=np.float64))

    # offerloop: training set from raw events
    engine = OfflineEngine(fs)
    engine.use_sqlite(db_dir / "offerloop.db")
    t = time.perf_counter()
    engine.compute(rows)
    ours_offline = time.perf_counter() - t
    print(
        f"offerloop offline: {len(rows):,} rows x {len(fs)} features from raw events "
        f"in {ours_offline:.2f} s"
    )

    # the pre-aggregated table Feast joins (not timed: another team's ETL)
    with duckdb.connect() as con:
        con.execute(f"LOAD '{engine_ext()}'")
        ev = con.execute(
            f"SELECT player_id, greatest(ts, received_at) AS v FROM sqlite_scan("
            f"'{db_dir / 'offerloop.db'}', 'events')"
        ).fetchnumpy()
    snap_rows = QueryRows(list(ev["player_id"]), np.asarray(ev["v"], dtype=np.float64))
    t = time.perf_counter()
    snap = engine.compute(snap_rows)
    print(
        f"(untimed for Feast) pre-aggregated snapshot table: {len(snap_rows):,} rows "
        f"in {time.perf_counter() - t:.1f} s"
    )
    engine.close()
    with tempfile.TemporaryDirectory() as d:
        repo = Path(d)
        table = {"player_id": snap_rows.player_ids, "event_timestamp": _stamps(pd, snap_rows.ts)}
        table.update({f.name: snap[f.name] for f in feats})
        pd.DataFrame(table).to_parquet(repo / "snap.parquet")
        (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML.format(dir=repo))
        player = Entity(name="player", join_keys=["player_id"])
        source = FileSource(path=str(repo / "snap.parquet"), timestamp_field="event_timestamp")
        types = {"int": Int64, "float": Float64, "category": String}
        view = FeatureView(
            name="player_features",
            entities=[player],
            schema=[Field(name=f.name, dtype=types[f.type]) for f in feats],
            source=source,
            online=True,
            ttl=None,
        )
        store = FeatureStore(repo_path=str(repo))
        store.apply([player, view])
        entity_df = pd.DataFrame(
            {
                "player_id": rows.player_ids,
                "event_timestamp": _stamps(pd, rows.ts),
            }
        )
        refs = [f"player_features:{f.name}" for f in feats]
        t = time.perf_counter()
        theirs = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
        feast_offline = time.perf_counter() - t
        print(
            f"Feast get_historical_features (DuckDB offline store, join only): "
            f"{len(theirs):,} rows in {feast_offline:.2f} s"
        )
        t = time.perf_counter()
        store.materialize(
            start_date=pd.Timestamp(T0 - 86400, unit="s", tz="UTC").to_pydatetime(),
            end_date=pd.Timestamp(T0 + SPAN + 2 * 86400, unit="s", tz="UTC").to_pydatetime(),
        )
        feast_materialize = time.perf_counter() - t
        rng = np.random.default_rng(1)
        players = sorted(set(rows.player_ids))
        pick = [players[i] for i in rng.integers(0, len(players), args.lookups)]
        lat = []
        for p in pick:
            t = time.perf_counter()
            store.get_online_features(features=refs, entity_rows=[{"player_id": p}]).to_dict()
            lat.append(time.perf_counter() - t)
        feast_ms = np.array(lat) * 1000

    backend = SQLiteBackend(db_dir, durability="normal")
    online = OnlineFeatures(fs)
    online.rebuild(backend.iter_events(batch=50_000), now=T0 + SPAN + 86400)
    backend.close()
    lat = []
    for p in pick:
        t = time.perf_counter()
        online.read(p, T0 + SPAN + 86400, {"local_hour": 20})
        lat.append(time.perf_counter() - t)
    ours_ms = np.array(lat) * 1000
    out = {
        "events": args.events,
        "rows": len(rows),
        "offerloop_offline_s": ours_offline,
        "feast_offline_join_only_s": feast_offline,
        "offline_ratio_feast_over_offerloop": feast_offline / ours_offline,
        "feast_materialize_s": feast_materialize,
        "offerloop_online_p50_ms": float(np.percentile(ours_ms, 50)),
        "offerloop_online_p99_ms": float(np.percentile(ours_ms, 99)),
        "feast_online_p50_ms": float(np.percentile(feast_ms, 50)),
        "feast_online_p99_ms": float(np.percentile(feast_ms, 99)),
    }
    out["online_p99_ratio_feast_over_offerloop"] = (
        out["feast_online_p99_ms"] / out["offerloop_online_p99_ms"]
    )
    print(f"Feast materialize: {feast_materialize:.1f} s")
    print(
        f"online lookup p50/p99: offerloop {out['offerloop_online_p50_ms']:.3f}/"
        f"{out['offerloop_online_p99_ms']:.3f} ms, Feast SQLite "
        f"{out['feast_online_p50_ms']:.3f}/{out['feast_online_p99_ms']:.3f} ms "
        f"(x{out['online_p99_ratio_feast_over_offerloop']:.0f} at p99)"
    )
    print(
        f"offline: Feast join-only / offerloop from raw events = "
        f"x{out['offline_ratio_feast_over_offerloop']:.1f}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"feast_peer_{args.events}.json").write_text(json.dumps(out, indent=2))


def _stamps(pd: Any, ts: np.ndarray) -> Any:
    """Feast wants microsecond timestamps (it refuses to truncate nanoseconds)."""
    return pd.to_datetime(np.round(ts * 1e6).astype(np.int64), unit="us", utc=True)


def engine_ext() -> str:
    from offerloop.features._offline import _sqlite_scanner

    ext = _sqlite_scanner()
    assert ext is not None
    return ext


if __name__ == "__main__":
    main()
