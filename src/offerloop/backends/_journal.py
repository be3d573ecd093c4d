"""Write-ahead journals: records this process acknowledged that are not yet in the database.

:class:`DecisionJournal` holds every decision of ``offerloop serve`` on its way to the
database; :class:`EventJournal` holds event batches acknowledged while the database could not
take them (down, or stalled past a request's deadline), so a client's events are never
refused for a fault of ours. Both are one :class:`Journal`, whose semantics follow; a
*kind* (``DECISIONS``, ``EVENTS``) says only how its records become rows and are stored.

The decision journal: the decisions this process answered that are not yet in the database.

A decision is appended to this process's journal file (one JSON line, written with a single
``write(2)``) before its answer; a writer thread moves the journal into the backend in
batches (group commit: one transaction per ``interval``, idempotent on ``decision_id``), and
the file is truncated whenever everything written to it is in the database. So the request
never waits for a database round trip or an ``fsync``, and the database takes one
transaction per batch instead of one per decision.

What "durable" means for an acknowledged decision (docs/reliability.md):

* **process crash** (``kill -9``, OOM kill, a bug): nothing is lost. The line was in the
  kernel's page cache before the answer; the next process that opens the data directory
  replays every journal whose owner is dead (its ``flock`` is free) and deletes it. The
  insert skips ids already stored, so each decision is stored exactly once.
* **machine crash** (power loss, kernel panic) with ``sync="interval"``: decisions not yet
  committed to the database, at most the last ``interval`` of them, may be lost (as with
  PostgreSQL's ``synchronous_commit=off``). While the database is down the journal is
  fsynced once per ``interval`` instead. ``sync="always"`` fsyncs each line before the
  answer: nothing acknowledged is lost, at the cost of an fsync per decision.
* **database down**: decisions keep being answered; the journal grows (in memory up to
  ``max_pending`` records, then on disk only) and is replayed when the database returns.
* **a record the database refuses** (``DataRejected``: validation at the edge should make
  this impossible, but a journal must not trust it): the batch is split in halves until the
  refused records are alone; each of them goes to the quarantine (a table every backend has,
  ``offerloop quarantine``, counted by ``on_quarantine``) and every other record of the batch
  is committed. The writer never stops on an error: anything unexpected is counted and
  retried, and a replay at start skips and quarantines what it cannot store, so start-up
  never blocks on one bad line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from offerloop._errors import BackendUnavailable
from offerloop.backends._protocols import DecisionLog, EventLog, Quarantine
from offerloop.backends._records import DecisionRecord, EventRecord, QuarantinedRecord
from offerloop.backends._rows import decision_from_row, decision_row

__all__ = [
    "DECISIONS",
    "EVENTS",
    "Committer",
    "DecisionJournal",
    "EventJournal",
    "Journal",
    "JournalKind",
    "RecordJournal",
]

_CHUNK = 1000  # records per transaction when replaying a file


class _Store(DecisionLog, EventLog, Quarantine, Protocol):
    pass


R = TypeVar("R")


@dataclass(frozen=True)
class JournalKind(Generic[R]):
    """How one kind of record is journaled: its name (the quarantine's kind, the journal's
    folder), its id, its row (JSON-encodable, built once) and how a batch is stored."""

    name: str
    folder: str
    key: Callable[[R], str]
    row: Callable[[R], tuple[Any, ...]]
    parse: Callable[[list[Any]], R]
    store: Callable[[_Store, list[R], list[tuple[Any, ...]] | None], int]


def _event_row(e: EventRecord) -> tuple[Any, ...]:
    return (e.event_id, e.player_id, e.type, e.ts, dict(e.properties), e.received_at, e.attribution)


def _event_parse(r: list[Any]) -> EventRecord:
    return EventRecord(r[0], r[1], r[2], float(r[3]), dict(r[4]), float(r[5]), r[6] or "")


DECISIONS: JournalKind[DecisionRecord] = JournalKind(
    "decision",
    "",
    lambda d: d.decision_id,
    decision_row,
    decision_from_row,
    lambda log, batch, rows: log.append_decisions(batch, rows or ()),
)
EVENTS: JournalKind[EventRecord] = JournalKind(
    "event",
    "events",
    lambda e: e.event_id,
    _event_row,
    _event_parse,
    lambda log, batch, rows: len(log.append_events(batch)),
)


class RecordJournal(Protocol[R]):
    """Records on their way to the database, acknowledged before they get there: the local
    journal (a file per process) or the replicated log (``backends._replicated``)."""

    def append(self, record: R) -> None: ...

    def append_many(self, records: Sequence[R], sync: bool = False) -> None: ...

    def find(self, ids: Sequence[str]) -> Mapping[str, R]: ...

    def flush(self) -> int: ...

    def backlog(self) -> int: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class _Unreadable:
    """A complete journal line that is not a decision record (never acknowledged as one)."""

    def __init__(self, line: bytes, why: str) -> None:
        self.line = line
        self.why = why


class Committer(Generic[R]):
    """Commits batches of one kind of record to the database; a batch the database refuses
    (anything but ``BackendUnavailable``) is split until each refused record is alone, and
    that one is quarantined. Shared by the local journal and the replicated log's consumer
    (``backends._replicated``)."""

    kind: JournalKind[R]
    log: _Store
    wall: Callable[[], float]
    on_quarantine: Callable[[int], None] | None
    quarantined: int

    def _store(self, batch: list[R], rows: list[tuple[Any, ...]] | None) -> int:
        """Commit ``batch``; a batch the database refuses (anything but ``BackendUnavailable``)
        is split until each refused record is alone, and that one is quarantined."""
        try:
            stored: int = self.kind.store(self.log, batch, rows or None)
            return stored
        except BackendUnavailable:
            raise
        except Exception as exc:
            if len(batch) == 1:
                self._quarantine(
                    [
                        QuarantinedRecord(
                            self.kind.name,
                            self.kind.key(batch[0]),
                            _payload(self.kind.row(batch[0])),
                            f"{type(exc).__name__}: {exc}"[:500],
                            self.wall(),
                        )
                    ]
                )
                return 0
        half = len(batch) // 2
        left_rows = rows[:half] if rows else None
        right_rows = rows[half:] if rows else None
        return self._store(batch[:half], left_rows) + self._store(batch[half:], right_rows)

    def _quarantine(self, records: list[QuarantinedRecord]) -> None:
        self.log.quarantine(records)  # BackendUnavailable: everything stays journaled
        self.quarantined += len(records)
        if self.on_quarantine is not None:
            self.on_quarantine(len(records))


class Journal(Committer[R]):
    def __init__(
        self,
        kind: JournalKind[R],
        directory: str | Path,
        log: _Store,
        *,
        interval: float = 0.02,
        sync: str = "interval",
        max_pending: int = 10_000,
        on_error: Callable[[Exception], None] | None = None,
        on_quarantine: Callable[[int], None] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if sync not in ("interval", "always"):
            raise ValueError(f"sync must be 'interval' or 'always', not {sync!r}")
        self.kind: JournalKind[R] = kind
        self.dir = Path(directory) / "journal"
        if kind.folder:
            self.dir = self.dir / kind.folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.interval = interval
        self.sync = sync
        self.max_pending = max_pending
        self.on_error = on_error
        self.on_quarantine = on_quarantine
        self.wall = wall
        self.path = self.dir / f"{os.getpid()}-{secrets.token_hex(6)}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while this process lives
        self._pending: list[R] = []
        self._rows: list[tuple[Any, ...]] = []  # the pending records' rows, built once
        self._on_disk_only = False  # too many pending: replay them from the file instead
        self._in_flight = 0  # taken by a flush, not yet committed (-1: a file replay)
        self._flight: list[R] = []  # that batch, still findable until committed
        self._orphans = True  # journals of dead processes may wait for replay
        self._lock = threading.Lock()  # the file and the pending list
        self._flush_lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recovered = 0  # decisions replayed from dead processes' journals
        self.stored = 0  # decisions this journal moved into the database
        self.quarantined = 0  # records the database refused, kept in its quarantine

    # -- the request path ----------------------------------------------------------------
    def append(self, record: R) -> None:
        """Journal one record; it is durable against a crash of this process on return."""
        self.append_many([record])

    def append_many(self, records: Sequence[R], sync: bool = False) -> None:
        """Journal records with one ``write(2)``; with ``sync`` (or ``sync="always"``) also
        on disk before return."""
        rows = [self.kind.row(r) for r in records]
        data = b"".join((json.dumps(row, separators=(",", ":")) + "\n").encode() for row in rows)
        with self._lock:
            _write_all(self._fd, data)
            if sync or self.sync == "always":
                os.fdatasync(self._fd)
            if not self._on_disk_only:
                self._pending.extend(records)
                self._rows.extend(rows)
                if len(self._pending) > self.max_pending:
                    self._pending.clear()  # the file has them all
                    self._rows.clear()
                    self._on_disk_only = True
            if self._thread is None:
                self.start()

    def find(self, ids: Sequence[str]) -> dict[str, R]:
        """The records among these ids that are journaled but maybe not yet committed."""
        wanted = set(ids)
        key = self.kind.key
        with self._lock:
            return {key(r): r for r in (*self._flight, *self._pending) if key(r) in wanted}

    def backlog(self) -> int:
        """Decisions answered but not yet in the database (-1: more than ``max_pending``)."""
        with self._lock:
            if self._on_disk_only or self._in_flight < 0:
                return -1
            return len(self._pending) + self._in_flight

    # -- the writer ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"offerloop-journal-{self.kind.name}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # counted by on_error; retried: the writer never dies
                time.sleep(min(1.0, self.interval * 10))

    def flush(self) -> int:
        """Move every journaled decision into the database now; returns how many were new.
        Raises BackendUnavailable (everything stays journaled) if the database is down."""
        with self._flush_lock:
            try:
                n = self._flush()
            except Exception as exc:
                with contextlib.suppress(OSError):
                    os.fdatasync(self._fd)  # not in the database: the journal must hold
                if self.on_error is not None:
                    self.on_error(exc)
                raise
            return n

    def _flush(self) -> int:
        stored = 0
        if self._orphans:
            stored += self._recover()
            self._orphans = False
        with self._lock:
            replay_size = os.fstat(self._fd).st_size if self._on_disk_only else -1
            self._on_disk_only = False
            batch, self._pending = self._pending, []
            rows, self._rows = self._rows, []
            self._in_flight = -1 if replay_size >= 0 else len(batch)
            self._flight = batch
        if replay_size >= 0:
            try:
                stored += self._replay(self.path, replay_size)
            except Exception:
                with self._lock:
                    self._pending, self._rows = [], []
                    self._on_disk_only = True
                    self._in_flight = 0
                raise
        if batch:
            try:
                stored += self._store(batch, rows)
            except Exception:
                with self._lock:
                    if not self._on_disk_only:
                        self._pending[:0] = batch
                        self._rows[:0] = rows
                    self._in_flight = 0
                    self._flight = []
                raise
        with self._lock:
            self._in_flight = 0
            self._flight = []
            if not self._pending and not self._on_disk_only:
                os.ftruncate(self._fd, 0)  # all of it is in the database
        self.stored += stored
        return stored

    def _replay(self, path: Path, size: int | None = None) -> int:
        stored = 0
        for chunk in _chunks(_read_records(path, self.kind.parse, size), _CHUNK):
            bad = [x for x in chunk if isinstance(x, _Unreadable)]
            if bad:
                self._quarantine(
                    [
                        QuarantinedRecord(
                            "journal_line",
                            hashlib.sha256(x.line).hexdigest()[:32],
                            x.line.decode("utf-8", "replace"),
                            x.why,
                            self.wall(),
                        )
                        for x in bad
                    ]
                )
            good = [x for x in chunk if not isinstance(x, _Unreadable)]
            if good:
                stored += self._store(good, None)
        return stored

    def _recover(self) -> int:
        """Replay and delete the journals of processes that died with decisions in them."""
        stored = 0
        for path in sorted(self.dir.glob("*.jsonl")):
            if path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # another process recovered it
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive
                n = self._replay(path)
                path.unlink(missing_ok=True)
                stored += n
                self.recovered += n
            finally:
                os.close(fd)
        return stored

    def close(self) -> None:
        """Stop the writer and move what is left into the database; if the database is down
        the file stays, to be replayed by the next process."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with contextlib.suppress(BackendUnavailable):
            self.flush()
        with self._lock:
            empty = os.fstat(self._fd).st_size == 0
            if empty:
                self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _payload(row: tuple[Any, ...]) -> Any:
    return json.loads(json.dumps(list(row), default=str))


def _read_records(
    path: Path, parse: Callable[[list[Any]], R], size: int | None = None
) -> Iterator[R | _Unreadable]:
    with path.open("rb") as f:
        data = f.read() if size is None else f.read(size)
    lines = data.split(b"\n")
    torn = lines.pop()  # after the last newline: empty, or a line torn by a crash
    for line in lines:
        if not line.strip():
            continue
        try:
            yield parse(json.loads(line))
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            yield _Unreadable(line, f"{type(exc).__name__}: {exc}"[:500])
    del torn  # a line without its newline was never acknowledged


def _chunks(items: Iterator[R | _Unreadable], size: int) -> Iterator[list[R | _Unreadable]]:
    chunk: list[R | _Unreadable] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class DecisionJournal(Journal[DecisionRecord]):
    """The decisions of ``offerloop serve`` on their way to the database."""

    def __init__(self, directory: str | Path, log: _Store, **kwargs: Any) -> None:
        super().__init__(DECISIONS, directory, log, **kwargs)


class EventJournal(Journal[EventRecord]):
    """Event batches acknowledged while the database could not take them; committed (and
    then folded into the online state from the log) when it can."""

    def __init__(self, directory: str | Path, log: _Store, **kwargs: Any) -> None:
        super().__init__(EVENTS, directory, log, **kwargs)
