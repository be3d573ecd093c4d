"""Guards around a dependency that may stall or go away: a circuit breaker and query deadlines.

:class:`Breaker` makes callers fail at once (``BackendUnavailable``) for ``cooldown`` seconds
after the dependency failed, instead of each waiting for its own timeout: while PostgreSQL
or Redis is down, a request that needs it is answered in microseconds, and one that can do
without it takes its fallback at once. After the cooldown the next call tries again (and
re-opens the breaker if it fails); an optional probe (``Breaker.probe``, run by whoever owns
a background thread) closes it as soon as the dependency answers, so no request has to pay
for the trial.

:class:`Deadlines` gives blocking socket I/O a deadline it does not have by itself: psycopg
waits on its socket without a timeout, so a server (or a proxy) that accepted a query and
never answers would hold the calling thread for ever. A connection armed with a deadline
has its socket shut down when the deadline passes; the waiting call then fails at once with
the driver's own "connection closed" error, and the pool discards the connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

from offerloop._errors import BackendUnavailable

__all__ = ["Breaker", "Deadlines", "deadline", "remaining"]

_budget = threading.local()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within the block, this thread's store calls must finish within ``seconds`` in all
    (nested blocks keep the earlier end): the request pools set it from a request's
    deadline, so a store that stalls fails the call in time for the request to fall back
    (``serving._pools``), whatever the store's own, longer timeout."""
    before: float | None = getattr(_budget, "until", None)
    until = time.monotonic() + seconds
    _budget.until = until if before is None else min(before, until)
    try:
        yield
    finally:
        _budget.until = before


def remaining() -> float | None:
    """Seconds left of this thread's :func:`deadline` (None: no deadline)."""
    until: float | None = getattr(_budget, "until", None)
    return None if until is None else until - time.monotonic()


class Breaker:
    """Open (fail fast) for ``cooldown`` seconds after a failure; closed on a success."""

    def __init__(
        self,
        name: str,
        cooldown: float = 1.0,
        on_open: Callable[[str], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.cooldown = cooldown
        self.on_open = on_open
        self._mono = monotonic
        self._open_until = 0.0
        self._reason = ""
        self.opened = 0  # how many times it opened

    @property
    def is_open(self) -> bool:
        return self._mono() < self._open_until

    @property
    def state(self) -> str:
        return "unavailable" if self.is_open else "ok"

    def check(self) -> None:
        """Raise ``BackendUnavailable`` at once while open."""
        if self._mono() < self._open_until:
            raise BackendUnavailable(f"{self.name} is unavailable ({self._reason}); retrying")

    def failure(self, reason: str) -> None:
        was_open = self.is_open
        self._open_until = self._mono() + self.cooldown
        self._reason = reason[:200]
        if not was_open:
            self.opened += 1
            if self.on_open is not None:
                self.on_open(self.name)

    def success(self) -> None:
        self._open_until = 0.0

    def probe(self, call: Callable[[], object]) -> bool:
        """Try ``call`` (a cheap round trip) while open; close on success. Returns whether
        the dependency answered."""
        try:
            call()
        except Exception as exc:  # the dependency's own errors: still down
            self.failure(str(exc))
            return False
        self.success()
        return True


class Deadlines:
    """Shut down a socket whose operation outlives its deadline (one watcher thread)."""

    def __init__(self, name: str = "offerloop-deadlines") -> None:
        self._name = name
        self._armed: dict[int, tuple[float, int]] = {}  # token -> (deadline, fd)
        self._next = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.expired = 0  # sockets cut

    def arm(self, fd: int, seconds: float) -> int:
        with self._cond:
            self._next += 1
            token = self._next
            self._armed[token] = (time.monotonic() + seconds, fd)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
            return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for token, (deadline, fd) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[token]
                        self.expired += 1
                        _cut(fd)  # under the lock: the owner cannot disarm and reuse it
                wait = min((d for d, _ in self._armed.values()), default=now + 1.0) - now
                self._cond.wait(max(0.005, min(wait, 1.0)))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()


def _cut(fd: int) -> None:
    """Shut the socket down (both directions) without closing the owner's descriptor."""
    with contextlib.suppress(OSError):
        s = socket.socket(fileno=os.dup(fd))
        try:
            s.shutdown(socket.SHUT_RDWR)
        finally:
            s.close()
