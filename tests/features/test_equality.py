"""Same values by construction: online (incremental), offline (DuckDB) and the reference fold
agree at every moment, for random event streams with out-of-order, late, future-stamped and
duplicate events."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offerloop.backends import EventRecord
from offerloop.backends._sqlite import SQLiteBackend
from offerloop.features import (
    FeatureSet,
    OfflineEngine,
    OnlineFeatures,
    QueryRows,
    aggregate,
    context,
    profile,
    reference_features,
    since_last,
)
from offerloop.features._columnar import ColumnarStore, columnar_properties
from tests.helpers import examples

HOUR = 3600.0
T0 = 1_770_000_000.0

FS = FeatureSet(
    [
        profile("country"),
        profile("age", type="float", default=-1.0),
        aggregate("level", "level_up", "last", property="level", type="int", default=1),
        aggregate("n_buy", "purchase", "count"),
        aggregate("n_buy_1h", "purchase", "count", "1h"),
        aggregate("n_buy_24h", "purchase", "count", "24h"),
        aggregate("spend", "purchase", "sum", property="amount"),
        aggregate("spend_24h", "purchase", "sum", "24h", property="amount"),
        aggregate("mean_buy", "purchase", "mean", property="amount"),
        aggregate("mean_buy_7d", "purchase", "mean", "7d", property="amount"),
        aggregate("min_buy_7d", "purchase", "min", "7d", property="amount"),
        aggregate("max_buy", "purchase", "max", property="amount"),
        aggregate("last_buy_24h", "purchase", "last", "24h", property="amount"),
        aggregate("last_buy", "purchase", "last", property="amount"),
        aggregate("distinct_amounts", "purchase", "distinct_count", property="amount"),
        aggregate("distinct_amounts_24h", "purchase", "distinct_count", "24h", property="amount"),
        aggregate("big_buys_7d", "purchase", "count", "7d", where="amount >= 10"),
        aggregate("big_spend", "purchase", "sum", property="amount", where="amount >= 10"),
        aggregate("sessions_1h", "session_start", "count", "1h"),
        aggregate("sessions_7d", "session_start", "count", "7d"),
        since_last("h_since_buy", "purchase"),
        since_last("h_since_big_buy", "purchase", where="amount >= 10"),
        since_last("d_since_session", "session_start", unit="d", default=-1.0),
        context("hour", default=12.0),
    ]
)

GRID = 1800.0  # half-hour grid: many ties, and window edges hit exactly
amounts = st.sampled_from([1, 2.5, 10, 25, 49.99, 0, "bad", None, True, 10.0])
props_by_type = {
    "purchase": st.fixed_dictionaries({"amount": amounts}),
    "session_start": st.just({}),
    "level_up": st.fixed_dictionaries({"level": st.sampled_from([1, 2, 7, 3.5, "x"])}),
    "player_profile": st.fixed_dictionaries(
        {},
        optional={
            "country": st.sampled_from(["us", "de", 5]),
            "age": st.sampled_from([20, 31.5, "old"]),
        },
    ),
}


@st.composite
def event_streams(draw: Any) -> tuple[list[EventRecord], list[tuple[str, float]]]:
    n = draw(st.integers(1, 60))
    events = []
    for i in range(n):
        kind = draw(st.sampled_from(sorted(props_by_type)))
        ts = T0 + draw(st.integers(0, 24 * 12)) * GRID  # up to 12 days
        # arrival: on time, a little late, very late (past every window), or early (clock skew)
        delay = draw(st.sampled_from([0.0, 0.0, 60.0, GRID, 30 * HOUR, 9 * 24 * HOUR, -120.0]))
        dup = draw(st.integers(0, 9)) == 0 and events
        eid = events[draw(st.integers(0, len(events) - 1))].event_id if dup else f"e{i}"
        events.append(
            EventRecord(
                eid,
                draw(st.sampled_from(["p0", "p1"])),
                kind,
                ts,
                draw(props_by_type[kind]),
                ts + delay,
            )
        )
    times = draw(st.lists(st.integers(0, 24 * 22), min_size=1, max_size=12))
    queries = [(draw(st.sampled_from(["p0", "p1", "p9"])), T0 + t * GRID) for t in times]
    return events, queries


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        )
    return a == b and type(a) is type(b)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_streams())
def test_online_offline_and_reference_agree(
    stream: tuple[list[EventRecord], list[tuple[str, float]]],
) -> None:
    events, queries = stream
    arrivals = sorted(events, key=lambda e: e.received_at)  # stable: batch order kept
    queries = sorted(queries, key=lambda q: q[1])
    online = OnlineFeatures(FS)
    stored: dict[str, EventRecord] = {}
    got_online = []
    i = 0
    for player, t in queries:
        while i < len(arrivals) and arrivals[i].received_at <= t:
            e = arrivals[i]
            if e.event_id not in stored:  # the log skips known ids; online sees new ones only
                stored[e.event_id] = e
                online.apply([e], now=e.received_at)
            i += 1
        got_online.append(online.read(player, t, {"hour": 7}))
    for e in arrivals[i:]:
        stored.setdefault(e.event_id, e)
    log = list(stored.values())
    engine = OfflineEngine(FS, threads=1)
    engine.use_records(log)
    cols = engine.compute(
        QueryRows(
            [p for p, _ in queries], np.array([t for _, t in queries]), [{"hour": 7}] * len(queries)
        )
    )
    offline = engine.rows(cols)
    engine.close()
    columnar = _columnar_rows(log, queries)
    for k, (player, t) in enumerate(queries):
        ref = reference_features(FS, [e for e in log if e.player_id == player], t, {"hour": 7})
        for name in FS.names:
            assert _same(got_online[k][name], ref[name]), (
                name,
                "online",
                got_online[k][name],
                ref[name],
                player,
                t,
            )
            assert _same(offline[k][name], ref[name]), (
                name,
                "offline",
                offline[k][name],
                ref[name],
                player,
                t,
            )
            assert _same(columnar[k][name], ref[name]), (
                name,
                "columnar",
                columnar[k][name],
                ref[name],
                player,
                t,
            )


def _columnar_rows(log: list[EventRecord], queries: list[tuple[str, float]]) -> list[Any]:
    """The offline engine over the columnar store, synced from a real log in two steps (so
    two syncs' files and player keys meet in one query) and compacted."""
    with tempfile.TemporaryDirectory() as d:
        backend = SQLiteBackend(Path(d) / "log", durability="normal")
        store = ColumnarStore(Path(d) / "columnar", columnar_properties(FS), compact_files=2)
        half = len(log) // 2
        backend.append_events(log[:half])
        store.sync(backend, batch=7)
        backend.append_events(log[half:])
        store.sync(backend, batch=7)
        store.compact()
        backend.close()
        engine = OfflineEngine(FS, threads=1)
        engine.use_columnar(store)
        cols = engine.compute(
            QueryRows(
                [p for p, _ in queries],
                np.array([t for _, t in queries]),
                [{"hour": 7}] * len(queries),
            )
        )
        engine.close()
        return engine.rows(cols)
