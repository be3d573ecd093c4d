"""SQL and batch sources: values, cache, latency budget, fallbacks, point-in-time loads."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import psycopg
import pytest

from offerloop import ManualClock, Offerloop, Settings
from offerloop.features import QueryRows
from offerloop.pipeline import offline_engine


def _features_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / f"feats_{uuid.uuid4().hex[:6]}.py"
    path.write_text(
        "from offerloop.features import FeatureSet, sql, batch\n"
        "from offerloop.features.default import FEATURES as BASE\n"
        f"FEATURES = FeatureSet(list(BASE) + [{body}])\n"
    )
    return str(path)


@pytest.fixture
def crm(tmp_path: Path) -> str:
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE crm (player_id TEXT, tier TEXT, churn REAL)")
        c.execute("INSERT INTO crm VALUES ('p1', 'gold', 0.25), ('p2', 'silver', 0.5)")
    return f"sqlite:///{db}"


def test_sql_source_values_cache_and_default(
    tmp_path: Path, settings: Settings, clock: ManualClock, crm: str
) -> None:
    q = "SELECT tier, churn FROM crm WHERE player_id = ?"
    spec = (
        f"sql('tier', {crm!r}, {q!r}, type='category', default='none', cache_seconds=60), "
        f"sql('churn', {crm!r}, {q!r}, timeout_ms=500)"
    )
    system = Offerloop(settings.replace(features=_features_file(tmp_path, spec)), clock)
    try:
        f = system.player_features.of("p1", clock.now())
        assert (f["tier"], f["churn"]) == ("gold", 0.25)
        assert system.player_features.of("nobody", clock.now())["tier"] == "none"
        with sqlite3.connect(crm[len("sqlite:///") :]) as c:
            c.execute("UPDATE crm SET tier = 'platinum' WHERE player_id = 'p1'")
        assert system.player_features.of("p1", clock.now())["tier"] == "gold"  # cached
        system.bootstrap()
        d = system.decide("p1")
        assert d.record.features["tier"] == "gold"  # logged: what training will use
    finally:
        system.close()


def test_slow_or_failing_sql_source_falls_back_within_budget(
    tmp_path: Path, settings: Settings, clock: ManualClock, crm: str
) -> None:
    spec = (
        f"sql('tier', {crm!r}, 'SELECT tier, churn FROM crm WHERE player_id = ?', "
        "type='category', default='none', cache_seconds=0, timeout_ms=20)"
    )
    system = Offerloop(settings.replace(features=_features_file(tmp_path, spec)), clock)
    blocker = sqlite3.connect(crm[len("sqlite:///") :], isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # the source's query waits for this lock
        # answered from the default while the query is provably still waiting: the caller
        # waits for the budget, never for the query (no clock involved)
        assert system.player_features.of("p1", clock.now())["tier"] == "none"
        blocker.execute("COMMIT")
        # the query finishes in the background and fills the cache for later lookups
        deadline = time.monotonic() + 60
        while system.player_features.of("p1", clock.now())["tier"] != "gold":
            assert time.monotonic() < deadline, "the slow query never filled the cache"
            time.sleep(0.05)
        text = system.metrics.render().decode()
        assert 'offerloop_feature_fallbacks_total{reason="timeout",source="tier"}' in text
    finally:
        blocker.close()
        system.close()
    spec = "sql('tier', 'sqlite:////nonexistent/dir/x.db', 'SELECT 1', type='category')"
    broken = Offerloop(settings.replace(features=_features_file(tmp_path, spec)), clock)
    try:
        assert broken.player_features.of("p1", clock.now())["tier"] == "unknown"
        assert 'reason="error"' in broken.metrics.render().decode()
    finally:
        broken.close()


@pytest.fixture
def pg_table() -> Iterator[tuple[str, str]]:
    url = "postgresql://postgres@127.0.0.1:5432/test"
    table = f"crm_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE TABLE {table} (player_id TEXT PRIMARY KEY, tier TEXT)")
        c.execute(f"INSERT INTO {table} VALUES ('p1', 'gold')")
    yield url, table
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"DROP TABLE {table}")


def test_sql_source_on_postgresql(
    tmp_path: Path, settings: Settings, clock: ManualClock, pg_table: tuple[str, str]
) -> None:
    url, table = pg_table
    q = f"SELECT tier FROM {table} WHERE player_id = ?"
    spec = f"sql('tier', {url!r}, {q!r}, type='category', timeout_ms=2000)"
    system = Offerloop(settings.replace(features=_features_file(tmp_path, spec)), clock)
    try:
        assert system.player_features.of("p1", clock.now())["tier"] == "gold"
        assert system.player_features.of("p2", clock.now())["tier"] == "unknown"
    finally:
        system.close()


def _write(path: Path, rows: list[tuple[str, float, float | None]]) -> None:
    con = duckdb.connect()
    values = ", ".join(f"('{p}', {t}, {'NULL' if v is None else v})" for p, t, v in rows)
    fmt = "parquet" if path.suffix == ".parquet" else "csv"
    con.execute(
        f"COPY (SELECT * FROM (VALUES {values}) x(player_id, ts, ltv)) TO '{path}' (FORMAT {fmt})"
    )
    con.close()


def test_batch_source_point_in_time_online_and_offline(
    tmp_path: Path, settings: Settings, clock: ManualClock
) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    t0 = clock.now()
    _write(exports / "day1.parquet", [("p1", t0 - 7200, 10.0), ("p2", t0 - 3600, 3.0)])
    spec = f"batch('ltv', {str(exports / '*')!r}, default=-1.0)"
    system = Offerloop(
        settings.replace(features=_features_file(tmp_path, spec), batch_poll_seconds=0.0), clock
    )
    try:
        assert system.player_features.of("p1", t0)["ltv"] == 10.0
        clock.advance(3600)
        t1 = clock.now()
        _write(
            exports / "day2.csv",
            [("p1", t1 - 60, 12.5), ("p1", t1 + 600, 99.0), ("p2", t1 - 60, None)],
        )
        assert system.player_features.of("p1", t1)["ltv"] == 12.5  # landed, polled, fresh
        assert system.player_features.of("p2", t1)["ltv"] == 3.0  # null: latest non-null
        clock.advance(1200)
        assert system.player_features.of("p1", clock.now())["ltv"] == 99.0
        engine = offline_engine(system)
        try:
            times = np.array([t0 - 1, t0, t1 - 30, t1, clock.now()])
            cols = engine.compute(QueryRows(["p1"] * 5, times))
            # a file's rows are known from its load time on (day1 at t0, day2 at t1)
            assert cols["ltv"].tolist() == [-1.0, 10.0, 10.0, 12.5, 99.0]
        finally:
            engine.close()
    finally:
        system.close()
    again = Offerloop(settings.replace(features=_features_file(tmp_path, spec)), clock)
    try:  # after a restart, files keep the load time first recorded
        assert again.backend.loads(f"batch:{exports / '*'}")[1][1] == t1
    finally:
        again.close()


@pytest.mark.timeout(30)
def test_regression_instant_queries_do_not_deadlock(crm: str) -> None:
    """A query finishing before its callback was attached ran the callback under the lock."""
    from offerloop.features import sql
    from offerloop.features._sql_source import SqlSource

    q = "SELECT tier FROM crm WHERE player_id = ?"
    src = SqlSource([sql("tier", crm, q, type="category", cache_seconds=0, timeout_ms=1000)])
    try:
        for _ in range(2000):
            assert src.lookup("p1") == {"tier": "gold"}
    finally:
        src.close()
