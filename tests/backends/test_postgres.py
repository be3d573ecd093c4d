"""The PostgreSQL backend against the real server: the shared conformance suite, migrations,
and concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from offerloop import BackendUnavailable
from offerloop.backends import EventRecord
from offerloop.backends._postgres import _MIGRATIONS, PostgresBackend
from tests.conftest import PG_URL, unique_name

pytestmark = pytest.mark.needs("postgres")


@pytest.fixture
def pg() -> Iterator[PostgresBackend]:
    b = PostgresBackend(PG_URL, schema=unique_name("t"))
    yield b
    b.drop_schema()
    b.close()


def test_migrations_apply_once_and_reopening_is_idempotent(pg: PostgresBackend) -> None:
    assert pg.schema_version() == len(_MIGRATIONS)
    again = PostgresBackend(PG_URL, schema=pg.schema)
    try:
        assert again.schema_version() == len(_MIGRATIONS)
        pg.append_events([EventRecord("e1", "p", "session_start", 1.0)])
        assert [e.event_id for e in again.player_events("p", 2.0)] == ["e1"]
    finally:
        again.close()


def test_concurrent_writers_of_the_same_retry_store_it_once(pg: PostgresBackend) -> None:
    other = PostgresBackend(PG_URL, schema=pg.schema)
    batch = [EventRecord(f"e{i}", f"p{i % 7}", "session_start", float(i)) for i in range(300)]
    results: list[list[EventRecord]] = []

    def send(b: PostgresBackend) -> None:
        results.append(b.append_events(batch))

    try:
        threads = [threading.Thread(target=send, args=(b,)) for b in (pg, other, pg, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.close()
    assert sorted(len(r) for r in results)[-1] == 300 or sum(len(r) for r in results) == 300
    assert sum(len(r) for r in results) == 300  # every event acknowledged as new exactly once
    assert len(list(pg.iter_events())) == 300


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(
        BackendUnavailable, match=r"PostgreSQL at postgresql://u:\*\*\*@127.0.0.1:1"
    ):
        PostgresBackend("postgresql://u:secret@127.0.0.1:1/test", schema="x")


def test_a_bad_schema_name_is_refused() -> None:
    from offerloop import InvalidInput

    with pytest.raises(InvalidInput, match="database_schema"):
        PostgresBackend(PG_URL, schema="Robert'); DROP TABLE students;--")
