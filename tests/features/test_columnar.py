"""The columnar event store follows the log exactly: every stored event once, whatever the
backend, the gaps that fill late, a sync that dies half-way, compaction or two writers; and
the offline engine reading it gives the values it gives reading the log."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from offerloop import ManualClock, Offerloop, load_settings
from offerloop.backends import EventRecord
from offerloop.backends._sqlite import SQLiteBackend
from offerloop.features import (
    ColumnarStore,
    OfflineEngine,
    QueryRows,
    columnar_properties,
    load_features,
)
from offerloop.features._columnar import MANIFEST, _day_name
from tests.conftest import PG_URL, unique_name

T0 = 1_770_000_000.0
DAY = 86400.0
FS = load_features()
PROPS = columnar_properties(FS)


def _events(rng: random.Random, n: int, tag: str, start: float = T0) -> list[EventRecord]:
    out = []
    for i in range(n):
        kind = rng.choice(["session_start", "purchase", "level_up", "player_profile"])
        props: dict[str, Any] = {}
        if kind == "purchase":
            props = {"amount": rng.choice([0.99, 4.99, 19.99, "free", True])}
        elif kind == "level_up":
            props = {"level": rng.randrange(1, 60)}
        elif kind == "player_profile":
            props = {"country": rng.choice(["us", "de"]), "platform": rng.choice(["ios", 3])}
        ts = start + rng.uniform(0, 3 * DAY)
        out.append(
            EventRecord(
                f"{tag}{i}", f"p{rng.randrange(30)}", kind, ts, props, ts + rng.uniform(0, 60)
            )
        )
    return out


def _stored(store: ColumnarStore) -> list[tuple[int, str]]:
    """(seq, event id) of every event in the store's files."""
    files = [str(p) for p in store.files()]
    if not files:
        return []
    with duckdb.connect() as con:
        return [
            (int(s), str(e))
            for s, e in con.execute(
                "SELECT seq, event_id FROM read_parquet($f) ORDER BY seq", {"f": files}
            ).fetchall()
        ]


def _values(engine: OfflineEngine, players: Sequence[str], ts: Sequence[float]) -> Any:
    cols = engine.compute(
        QueryRows(list(players), np.array(ts, dtype=np.float64), [{"local_hour": 9}] * len(ts))
    )
    return engine.rows(cols)


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Equal rows; floats up to summation order (the store's rows are read in another order)."""

    def eq(x: Any, y: Any) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
        return bool(x == y and type(x) is type(y))

    return len(a) == len(b) and all(
        r.keys() == q.keys() and all(eq(r[k], q[k]) for k in r) for r, q in zip(a, b, strict=True)
    )


def _queries(rng: random.Random, n: int) -> tuple[list[str], list[float]]:
    return (
        [f"p{rng.randrange(35)}" for _ in range(n)],  # some players have no events
        [T0 + rng.uniform(0, 4 * DAY) for _ in range(n)],
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        b: Any = SQLiteBackend(tmp_path / "log", durability="normal")
    else:
        from offerloop.backends._postgres import PostgresBackend

        b = PostgresBackend(PG_URL, schema=unique_name("col"))
    yield b
    if request.param == "postgres":
        b.drop_schema()
    b.close()


def test_the_store_follows_the_log_and_gives_the_logs_values(log: Any, tmp_path: Path) -> None:
    rng = random.Random(3)
    store = ColumnarStore(tmp_path / "col", PROPS)
    for k in range(3):
        log.append_events(_events(rng, 400, f"b{k}-"))
        log.append_events(_events(rng, 5, f"b{k}-"))  # ids seen already: skipped by the log
        result = store.sync(log, batch=150)
        assert result.events == 400
    assert [e for _, e in _stored(store)] == [e.event_id for e in log.iter_events()]
    # a second handle on the directory sees the same store; nothing new to add
    again = ColumnarStore(tmp_path / "col", PROPS)
    assert again.sync(log).events == 0
    assert len(again) == 1200

    players, ts = _queries(rng, 300)
    direct = OfflineEngine(FS, threads=1)
    if log.name == "postgres":
        direct.use_postgres(log.url, log.schema)
    else:
        direct.use_sqlite(log.path)
    columnar = OfflineEngine(FS, threads=1)
    columnar.use_columnar(again)
    assert _same(_values(columnar, players, ts), _values(direct, players, ts))
    direct.close()
    columnar.close()


class _LateLog:
    """A real log whose reader does not yet see some sequence numbers, as PostgreSQL readers
    do not see a transaction that commits after a later one."""

    transient_gaps = True

    def __init__(self, log: SQLiteBackend) -> None:
        self.log = log
        self.hidden: set[int] = set()
        self.fail_after_reads = -1

    def events_after(self, seq: int, limit: int = 10_000) -> list[EventRecord]:
        if self.fail_after_reads == 0:
            raise OSError("connection lost")
        self.fail_after_reads -= 1
        return [e for e in self.log.events_after(seq, limit) if e.seq not in self.hidden]

    def events_at(self, seqs: Sequence[int]) -> list[EventRecord]:
        return [e for e in self.log.events_at(seqs) if e.seq not in self.hidden]


def test_a_gap_that_fills_later_is_added_once_and_given_up_after_the_horizon(
    tmp_path: Path,
) -> None:
    log = SQLiteBackend(tmp_path / "log", durability="normal")
    log.append_events(_events(random.Random(1), 50, "e"))
    late = _LateLog(log)
    late.hidden = {5, 6, 30}
    clock = ManualClock(T0)
    store = ColumnarStore(tmp_path / "col", PROPS, wall=clock.now, horizon=600)
    assert store.sync(late).holes == 3  # type: ignore[arg-type]
    assert len(store) == 47
    late.hidden = {30}  # 5 and 6 commit
    clock.advance(60)
    result = store.sync(late)  # type: ignore[arg-type]
    assert (result.events, result.holes) == (2, 1)
    clock.advance(600)  # 30 never comes (a rolled-back transaction): given up
    assert store.sync(late).holes == 0  # type: ignore[arg-type]
    assert [s for s, _ in _stored(store)] == [s for s in range(1, 51) if s != 30]
    log.close()


def test_a_sync_that_dies_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    log = SQLiteBackend(tmp_path / "log", durability="normal")
    log.append_events(_events(random.Random(2), 300, "e"))
    late = _LateLog(log)
    store = ColumnarStore(tmp_path / "col", PROPS)
    late.fail_after_reads = 2
    with pytest.raises(OSError, match="connection lost"):
        store.sync(late, batch=100)  # type: ignore[arg-type]
    assert len(store) == 0
    assert store.scan == 0
    assert not list((tmp_path / "col").rglob("*.parquet"))  # nothing half-written stays
    # a crashed process's file that no manifest lists is removed when the store is opened
    stray = tmp_path / "col" / "events" / "day=20260101" / "part-x.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"PAR1")
    store = ColumnarStore(tmp_path / "col", PROPS)
    assert not stray.exists()
    late.fail_after_reads = -1
    assert store.sync(late, batch=100).events == 300  # type: ignore[arg-type]
    assert [s for s, _ in _stored(store)] == list(range(1, 301))
    log.close()


def test_a_feature_reading_a_new_property_rebuilds_the_store(tmp_path: Path) -> None:
    log = SQLiteBackend(tmp_path / "log", durability="normal")
    log.append_events(_events(random.Random(4), 100, "e"))
    ColumnarStore(tmp_path / "col", ["amount"]).sync(log)
    store = ColumnarStore(tmp_path / "col", ["amount", "level"])
    assert "level" in store.reset_reason
    assert len(store) == 0
    assert store.sync(log).events == 100
    with pytest.raises(ValueError, match="no columns for"):
        OfflineEngine(FS).use_columnar(ColumnarStore(tmp_path / "c2", ["amount"]))
    log.close()


def test_compaction_merges_a_days_files_and_deletes_them_only_later(tmp_path: Path) -> None:
    log = SQLiteBackend(tmp_path / "log", durability="normal")
    clock = ManualClock(T0)
    store = ColumnarStore(
        tmp_path / "col", PROPS, wall=clock.now, compact_files=4, retire_seconds=3600
    )
    rng = random.Random(5)
    for k in range(6):
        log.append_events(_events(rng, 60, f"b{k}-"))
        store.sync(log)
    before = store.files()
    players, ts = _queries(rng, 200)
    engine = OfflineEngine(FS, threads=1)
    engine.use_columnar(store)
    expected = _values(engine, players, ts)
    assert store.compact() == len(before)
    after = store.files()
    days = {p.parent.name for p in before}
    assert len(after) == len(days)  # one file per day
    assert all(p.exists() for p in before)  # a query that listed them can still read them
    assert _same(_values(engine, players, ts), expected)
    clock.advance(3600)
    store.compact()
    assert not any(p.exists() for p in before)
    assert len(_stored(store)) == 360
    # the days after the latest row computed are not read at all
    first = f"day={_day_name(int(T0 // DAY))}"
    assert [p.parent.name for p in store.files(until=T0)] == [first]
    engine.close()
    log.close()


def test_two_writers_on_one_directory_store_each_event_once_under_one_key(
    tmp_path: Path,
) -> None:
    log = SQLiteBackend(tmp_path / "log", durability="normal")
    a = ColumnarStore(tmp_path / "col", PROPS)
    b = ColumnarStore(tmp_path / "col", PROPS)
    rng = random.Random(6)
    for k in range(6):
        log.append_events(_events(rng, 80, f"b{k}-"))
        assert (a if k % 2 else b).sync(log, batch=50).events == 80  # only what is new
    assert [s for s, _ in _stored(a)] == list(range(1, 481))
    players = sorted({e.player_id for e in log.iter_events()})
    assert a.player_keys(players).tolist() == b.player_keys(players).tolist()
    assert sorted(a.player_keys(players).tolist()) == list(range(len(players)))
    log.close()


def test_the_service_keeps_the_store_current_and_the_pipeline_reads_it(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), columnar_sync_seconds=0.05)
    system = Offerloop(settings)
    try:
        system.bootstrap(actor="test")
        records = _events(random.Random(7), 200, "e", start=T0 - 3 * DAY)
        system.backend.append_events(records)
        system.start_background()
        store = system.columnar()
        assert store is not None
        manifest = tmp_path / "data" / "columnar" / MANIFEST

        def current() -> bool:  # the files readers see and the manifest that lists them
            return len(store) == 200 and '"events": 200' in manifest.read_text()

        deadline = time.monotonic() + 120
        while not current() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert current()
    finally:
        system.close()
