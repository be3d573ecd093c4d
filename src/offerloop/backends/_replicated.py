"""A replicated log as the system of record for events and decisions (setting ``log_url``).

The contract is three calls, so that another log (Kafka, Redpanda) is one small adapter:

* ``append(topic, items)`` stores each ``(key, payload)`` and returns once the log has it
  (on as many replicas as the log is configured to wait for), with, per item, whether it was
  new: an item whose key the log stored before (within its de-duplication window) is not
  stored again. Raises ``BackendUnavailable`` when that cannot be confirmed; some items may
  then be stored, and a retry with the same keys stores each once.
* ``read(topic, consumer, limit, wait)``: up to ``limit`` items the named durable consumer
  has not acknowledged, waiting at most ``wait`` seconds for the first. At least once: an
  item read and not acknowledged (the reader died) is delivered again, to this or another
  reader of the same consumer.
* ``ack(deliveries)``: the consumer is done with them.

:class:`LogJournal` puts the log where the local journal (``backends._journal``) was: the
request path appends the record and answers once the log acknowledged it; a consumer thread
reads the log with its durable cursor and commits batches to the database (idempotent on ids,
so an item delivered twice is stored once; a record the database refuses is quarantined),
acknowledging them only after the commit. Until then this process can still find a record it
appended (attribution of a purchase to a decision just made). Every process reads with the same
consumer name, so the log spreads the work and a process that dies leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from offerloop._errors import BackendUnavailable
from offerloop.backends._journal import Committer, JournalKind, _Store

__all__ = ["Delivery", "LogJournal", "ReplicatedLog"]

R = TypeVar("R")
FORGET_AFTER = 300.0  # seconds a record appended here stays findable if another process stores it
# keys this process committed lately: an append that returns after its record was committed
# (the consumer was quicker than the caller, or a retry of a record an earlier attempt stored)
# must not leave it pending for ever; a bounded memory, oldest forgotten first
COMMITTED_KEPT = 100_000


@dataclass(frozen=True)
class Delivery:
    key: str
    payload: bytes
    handle: Any  # the log's own message, for ``ack``


class ReplicatedLog(Protocol):
    def append(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[bool]: ...

    def read(self, topic: str, consumer: str, limit: int, wait: float) -> list[Delivery]: ...

    def ack(self, deliveries: Sequence[Delivery]) -> None: ...

    def close(self) -> None: ...


class LogJournal(Committer[R], Generic[R]):
    """The journal's interface (append, find, flush, backlog) over a replicated log."""

    def __init__(
        self,
        kind: JournalKind[R],
        log: ReplicatedLog,
        store: _Store,
        *,
        consumer: str = "offerloop-database",
        interval: float = 0.02,
        batch: int = 1000,
        on_error: Callable[[Exception], None] | None = None,
        on_quarantine: Callable[[int], None] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.kind = kind
        self.replicated = log
        self.log = store
        self.consumer = f"{consumer}-{kind.name}"
        self.interval = interval
        self.batch = batch
        self.on_error = on_error
        self.on_quarantine = on_quarantine
        self.wall = wall
        self.quarantined = 0
        self.stored = 0
        self.recovered = 0
        self._pending: dict[str, tuple[R, float]] = {}
        self._committed: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the request path ----------------------------------------------------------------
    def append(self, record: R) -> None:
        """Store one record in the log; durable (replicated) on return."""
        self.append_many([record])

    def append_many(self, records: Sequence[R], sync: bool = False) -> None:
        """Store records in the log, durable on return (``sync`` is always the case here);
        ``BackendUnavailable`` if the log did not confirm them all (retry with the same
        records: each is stored once)."""
        del sync
        if not records:
            return
        key = self.kind.key
        items = [
            (key(r), json.dumps(self.kind.row(r), separators=(",", ":")).encode()) for r in records
        ]
        self.replicated.append(self.kind.name, items)
        now = self.wall()
        with self._lock:
            for r in records:
                k = key(r)
                if k not in self._committed:
                    self._pending[k] = (r, now)
        if self._thread is None:
            self.start()

    def find(self, ids: Sequence[str]) -> dict[str, R]:
        """Records among these ids this process appended and has not yet seen committed."""
        with self._lock:
            return {i: self._pending[i][0] for i in ids if i in self._pending}

    def backlog(self) -> int:
        with self._lock:
            return len(self._pending)

    # -- the consumer --------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"offerloop-log-{self.kind.name}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.flush(wait=self.interval):
                    self._stop.wait(self.interval)
            except Exception:  # counted by on_error; the consumer never dies
                self._stop.wait(min(1.0, self.interval * 10))

    def flush(self, wait: float = 0.05) -> int:
        """Commit to the database what the log holds for the consumer now; returns how many
        records were new. ``BackendUnavailable`` if the log or the database is down (the log
        keeps them)."""
        with self._flush_lock:
            stored = 0
            try:
                while True:
                    got = self.replicated.read(self.kind.name, self.consumer, self.batch, wait)
                    if not got:
                        break
                    stored += self._commit(got)
                    wait = 0.0
            except Exception as exc:
                if self.on_error is not None:
                    self.on_error(exc)
                raise
            self._forget()
            self.stored += stored
            return stored

    def _commit(self, got: Sequence[Delivery]) -> int:
        records, rows = [], []
        for d in got:
            row = json.loads(d.payload)
            rows.append(tuple(row))
            records.append(self.kind.parse(row))
        n = self._store(records, rows)
        self.replicated.ack(got)  # after the commit: a crash before it redelivers them
        with self._lock:
            for d in got:
                self._pending.pop(d.key, None)
                self._committed[d.key] = None
                self._committed.move_to_end(d.key)
            while len(self._committed) > COMMITTED_KEPT:
                self._committed.popitem(last=False)
        return n

    def _forget(self) -> None:
        """Records another process committed: not findable here forever."""
        old = self.wall() - FORGET_AFTER
        with self._lock:
            for k in [k for k, (_, t) in self._pending.items() if t < old]:
                del self._pending[k]

    def close(self) -> None:
        """Stop the consumer and commit what the log holds now (if the database answers)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with contextlib.suppress(BackendUnavailable):
            self.flush(wait=0.0)
