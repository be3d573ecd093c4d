"""The decision journal: group commit into the database, replay after a crash, exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from offerloop._errors import BackendUnavailable
from offerloop.backends import DecisionRecord
from offerloop.backends._journal import DecisionJournal
from offerloop.backends._rows import decision_row
from offerloop.backends._sqlite import SQLiteBackend


def _d(i: int) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"d{i:05d}",
        ts=float(i),
        player_id=f"p{i}",
        campaign="c",
        offer_id="a:b",
        model_version="random-1",
        mode="released",
        propensity=0.25,
        features={"x": i, "s": "é"},
        context={"local_hour": 3},
    )


class _Flaky:
    """A real backend whose connection the test can cut (the journal sees what it would
    see from a database that is down)."""

    def __init__(self, backend: SQLiteBackend) -> None:
        self.backend = backend
        self.down = False
        self.calls = 0

    def append_decisions(
        self, decisions: Sequence[DecisionRecord], rows: Sequence[tuple[object, ...]] = ()
    ) -> int:
        self.calls += 1
        if self.down:
            raise BackendUnavailable("the database is down (test)")
        return self.backend.append_decisions(decisions, rows)

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)


def _ids(backend: SQLiteBackend) -> list[str]:
    return [d.decision_id for d in backend.decisions("c", 0.0, 1e12)]


def test_decisions_reach_the_database_in_batches_and_the_file_empties(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path)
    journal = DecisionJournal(tmp_path, backend, interval=3600)  # no timed flush here
    for i in range(5):
        journal.append(_d(i))
    assert journal.backlog() == 5
    assert journal.path.stat().st_size > 0
    assert _ids(backend) == []  # not yet committed: the request never waited for it
    assert journal.flush() == 5
    assert _ids(backend) == [f"d{i:05d}" for i in range(5)]
    assert backend.get_decisions(["d00003"]) == {"d00003": _d(3)}
    assert journal.path.stat().st_size == 0
    journal.close()
    assert not journal.path.exists()


def test_the_writer_commits_by_itself(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path)
    journal = DecisionJournal(tmp_path, backend, interval=0.01)
    journal.append(_d(1))
    for _ in range(200):
        if _ids(backend):
            break
        import time

        time.sleep(0.01)
    assert _ids(backend) == ["d00001"]
    journal.close()


def test_database_down_keeps_everything_then_overflows_to_disk(tmp_path: Path) -> None:
    flaky = _Flaky(SQLiteBackend(tmp_path))
    errors: list[BackendUnavailable] = []
    journal = DecisionJournal(tmp_path, flaky, interval=3600, max_pending=3, on_error=errors.append)
    flaky.down = True
    journal.append(_d(0))
    with pytest.raises(BackendUnavailable):
        journal.flush()
    assert journal.backlog() == 1
    assert len(errors) == 1
    for i in range(1, 6):  # more than max_pending: memory lets go, the file keeps them
        journal.append(_d(i))
    assert journal.backlog() == -1
    flaky.down = False
    assert journal.flush() == 6
    assert journal.backlog() == 0
    assert _ids(flaky.backend) == [f"d{i:05d}" for i in range(6)]
    journal.close()


def test_sync_always_and_unknown_sync(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path)
    journal = DecisionJournal(tmp_path, backend, interval=3600, sync="always")
    journal.append(_d(1))
    assert journal.flush() == 1
    journal.close()
    with pytest.raises(ValueError, match="sync"):
        DecisionJournal(tmp_path, backend, sync="sometimes")


_CHILD = textwrap.dedent(
    """
    import sys
    from offerloop.backends._journal import DecisionJournal
    from offerloop.backends._sqlite import SQLiteBackend
    from tests.backends.test_journal import _d

    root = sys.argv[1]
    journal = DecisionJournal(root, SQLiteBackend(root), interval=3600)
    for i in range(int(sys.argv[2]), int(sys.argv[3])):
        journal.append(_d(i))
        if i == int(sys.argv[2]) + 2:
            journal.flush()  # some of them already in the database before the crash
        print(i, flush=True)  # acknowledged
    print("done", flush=True)
    sys.stdin.read()  # wait to be killed
    """
)


def test_kill_9_loses_nothing_acknowledged_and_stores_each_once(tmp_path: Path) -> None:
    root = Path(__file__).parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), "0", "40"],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert proc.stdout is not None
    acked = []
    for line in proc.stdout:
        if line.strip() == "done":
            break
        acked.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert proc.stdin is not None
    proc.stdin.close()
    assert len(acked) == 40
    backend = SQLiteBackend(tmp_path)
    assert len(_ids(backend)) == 3  # only the flushed ones: the rest were journaled
    backend.append_decisions([_d(10)])  # as if a replay had been cut short after this one
    # the next process replays the dead one's journal (and deletes it), exactly once
    journal = DecisionJournal(tmp_path, backend, interval=3600)
    assert journal.flush() == 36
    assert journal.recovered == 36
    assert _ids(backend) == [f"d{i:05d}" for i in acked]
    assert [p for p in (tmp_path / "journal").iterdir() if p != journal.path] == []
    journal.close()


def test_a_live_process_journal_is_not_replayed_by_another(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path)
    first = DecisionJournal(tmp_path, backend, interval=3600)
    first.append(_d(1))
    second = DecisionJournal(tmp_path, backend, interval=3600)
    assert second.flush() == 0  # the first one is alive: its journal is its own
    assert first.path.exists()
    assert first.flush() == 1
    first.close()
    second.close()


def test_a_batch_being_committed_still_counts_as_backlog(tmp_path: Path) -> None:
    flaky = _Flaky(SQLiteBackend(tmp_path))
    journal = DecisionJournal(tmp_path, flaky, interval=3600)
    seen: list[int] = []
    commit = flaky.append_decisions

    def watched(
        decisions: Sequence[DecisionRecord], rows: Sequence[tuple[object, ...]] = ()
    ) -> int:
        seen.append(journal.backlog())  # mid-commit: taken from pending, not yet stored
        return commit(decisions, rows)

    flaky.append_decisions = watched  # type: ignore[method-assign]
    for i in range(3):
        journal.append(_d(i))
    assert journal.flush() == 3
    assert seen == [3]
    assert journal.backlog() == 0
    journal.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Each real backend, empty."""
    if request.param == "sqlite":
        b: Any = SQLiteBackend(tmp_path / "db")
        yield b
        b.close()
        return
    from offerloop.backends._postgres import PostgresBackend
    from tests.conftest import PG_URL, unique_name

    b = PostgresBackend(PG_URL, schema=unique_name("j"))
    yield b
    b.drop_schema()
    b.close()


def _refused(store: Any, i: int) -> DecisionRecord:
    """A decision this store refuses for good (it bypassed validation at the edge): a NUL in
    a text column for PostgreSQL, an unpaired surrogate for SQLite."""
    bad = "p\x00x" if store.name == "postgres" else "p\ud800x"
    return replace(_d(i), player_id=bad)


def test_a_record_the_database_refuses_is_quarantined_and_the_batch_committed(
    store: Any, tmp_path: Path
) -> None:
    """Finding 1 of issue 13: one decision with a NUL player id killed the writer thread on
    PostgreSQL; an innocent decision of the same batch was lost, and so were the next ones."""
    seen: list[int] = []
    journal = DecisionJournal(tmp_path, store, interval=3600, on_quarantine=seen.append)
    for i in range(10):
        journal.append(_refused(store, i) if i == 4 else _d(i))
    assert journal.flush() == 9  # every other decision of the batch is committed
    assert sorted(store.get_decisions([f"d{i:05d}" for i in range(10)])) == [
        f"d{i:05d}" for i in range(10) if i != 4
    ]
    (q,) = store.quarantined()
    assert (q.kind, q.key) == ("decision", "d00004")
    assert q.payload[2] == _refused(store, 4).player_id  # kept as it was, for an operator
    assert seen == [1]
    journal.start()  # the writer thread keeps going: later decisions still arrive
    for i in range(10, 13):
        journal.append(_d(i))
    journal.close()
    assert len(store.get_decisions([f"d{i:05d}" for i in range(10, 13)])) == 3


def test_replay_at_start_quarantines_what_it_cannot_store_and_never_blocks(
    store: Any, tmp_path: Path
) -> None:
    """Finding 1: `serve` on that data dir then exited at every start, replaying the journal."""
    dead = tmp_path / "journal" / "1-dead.jsonl"
    dead.parent.mkdir(parents=True)
    lines = [json.dumps(list(decision_row(_d(i)))) for i in range(3)]
    lines.insert(1, json.dumps(list(decision_row(_refused(store, 7)))))
    lines.insert(2, '{"not": "a decision"}')
    dead.write_text("\n".join(lines) + "\n" + '["torn by a crash", ')
    journal = DecisionJournal(tmp_path, store, interval=3600)
    assert journal.flush() == 3  # the good ones
    journal.close()
    assert not dead.exists()
    kinds = sorted(q.kind for q in store.quarantined())
    assert kinds == ["decision", "journal_line"]  # the torn last line was never acknowledged
