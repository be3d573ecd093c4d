"""The decision journal: the decisions this process answered that are not yet in the database.

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
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from offerloop._errors import BackendUnavailable
from offerloop.backends._protocols import DecisionLog
from offerloop.backends._records import DecisionRecord
from offerloop.backends._rows import decision_from_row, decision_row

__all__ = ["DecisionJournal"]

_CHUNK = 1000  # records per transaction when replaying a file


class DecisionJournal:
    def __init__(
        self,
        directory: str | Path,
        log: DecisionLog,
        *,
        interval: float = 0.02,
        sync: str = "interval",
        max_pending: int = 10_000,
        on_error: Callable[[BackendUnavailable], None] | None = None,
    ) -> None:
        if sync not in ("interval", "always"):
            raise ValueError(f"sync must be 'interval' or 'always', not {sync!r}")
        self.dir = Path(directory) / "journal"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.interval = interval
        self.sync = sync
        self.max_pending = max_pending
        self.on_error = on_error
        self.path = self.dir / f"{os.getpid()}-{secrets.token_hex(6)}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while this process lives
        self._pending: list[DecisionRecord] = []
        self._rows: list[tuple[Any, ...]] = []  # the pending records' rows, built once
        self._on_disk_only = False  # too many pending: replay them from the file instead
        self._in_flight = 0  # taken by a flush, not yet committed (-1: a file replay)
        self._orphans = True  # journals of dead processes may wait for replay
        self._lock = threading.Lock()  # the file and the pending list
        self._flush_lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recovered = 0  # decisions replayed from dead processes' journals
        self.stored = 0  # decisions this journal moved into the database

    # -- the request path ----------------------------------------------------------------
    def append(self, record: DecisionRecord) -> None:
        """Journal one decision; it is durable against a crash of this process on return."""
        row = decision_row(record)
        line = (json.dumps(row, separators=(",", ":")) + "\n").encode()
        with self._lock:
            _write_all(self._fd, line)
            if self.sync == "always":
                os.fdatasync(self._fd)
            if not self._on_disk_only:
                self._pending.append(record)
                self._rows.append(row)
                if len(self._pending) > self.max_pending:
                    self._pending.clear()  # the file has them all
                    self._rows.clear()
                    self._on_disk_only = True
            if self._thread is None:
                self.start()

    def backlog(self) -> int:
        """Decisions answered but not yet in the database (-1: more than ``max_pending``)."""
        with self._lock:
            if self._on_disk_only or self._in_flight < 0:
                return -1
            return len(self._pending) + self._in_flight

    # -- the writer ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="offerloop-journal", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            with contextlib.suppress(BackendUnavailable):  # counted by on_error; retried
                self.flush()

    def flush(self) -> int:
        """Move every journaled decision into the database now; returns how many were new.
        Raises BackendUnavailable (everything stays journaled) if the database is down."""
        with self._flush_lock:
            try:
                n = self._flush()
            except BackendUnavailable as exc:
                with contextlib.suppress(OSError):
                    os.fdatasync(self._fd)  # the database is down: the journal must hold
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
        if replay_size >= 0:
            try:
                stored += self._replay(self.path, replay_size)
            except BackendUnavailable:
                with self._lock:
                    self._pending, self._rows = [], []
                    self._on_disk_only = True
                    self._in_flight = 0
                raise
        if batch:
            try:
                stored += self.log.append_decisions(batch, rows)
            except BackendUnavailable:
                with self._lock:
                    if not self._on_disk_only:
                        self._pending[:0] = batch
                        self._rows[:0] = rows
                    self._in_flight = 0
                raise
        with self._lock:
            self._in_flight = 0
            if not self._pending and not self._on_disk_only:
                os.ftruncate(self._fd, 0)  # all of it is in the database
        self.stored += stored
        return stored

    def _replay(self, path: Path, size: int | None = None) -> int:
        stored = 0
        for chunk in _chunks(_read_records(path, size), _CHUNK):
            stored += self.log.append_decisions(chunk)
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


def _read_records(path: Path, size: int | None = None) -> Iterator[DecisionRecord]:
    with path.open("rb") as f:
        data = f.read() if size is None else f.read(size)
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            yield decision_from_row(json.loads(line))
        except (ValueError, TypeError, IndexError):
            continue  # a line torn by a machine crash was never acknowledged


def _chunks(items: Iterator[DecisionRecord], size: int) -> Iterator[list[DecisionRecord]]:
    chunk: list[DecisionRecord] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
