"""Bounded work: no request waits on another, on a stalled dependency, or in an endless queue.

The event loop runs only work that never blocks: the decision path (``serving._hot``: the
features read has a short timeout and a breaker, the journal append is a ``write(2)``) and
answers built from memory (``/healthz``, ``/metrics``). Everything that can block on a store
or compute for long runs in a thread pool of its *class* (:class:`WorkPools`):

* ``write``: event batches, admin changes;
* ``read``: decision lookups, a player's features, the registry;
* ``slow``: the dashboard, the monitoring views, reports (heavy reads over the logs);
* ``pipeline``: a pipeline run asked through the admin API (one at a time; it trains models,
  so its deadline is an hour, not seconds).

Each class has a bound on work in flight (queued or running); a request over it is shed at
once with ``Overloaded`` (HTTP 503 + ``Retry-After``) instead of joining a queue whose wait
would exceed any client's timeout. Each request has a deadline: a store that stalls makes
its request answer 503 after ``timeout`` seconds while the thread waits for the store's own
deadline (``backends._guard``); the slot stays taken until the thread returns, so stuck work
is counted and sheds new work rather than piling up behind it.

:class:`LoopLag` measures how late the event loop runs its callbacks: how long a request
that arrives now waits before it is looked at. When the loop has been later than ``shed_ms``
for ``5 × shed_ms`` without a break, decide requests are shed (the CoDel idea: drop on
sustained queueing delay, not on queue length, and not on a burst that drains by itself, such
as the backlog a restarted server finds), so that at five times the comfortable rate the
answered requests keep their latency and the rest get a quick 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from offerloop._errors import BackendUnavailable, Overloaded
from offerloop._metrics import Metrics
from offerloop.backends._guard import deadline

__all__ = ["POOLS", "LoopLag", "WorkPools"]

T = TypeVar("T")

# class -> (threads, most in flight, seconds before the request is answered 503)
POOLS: dict[str, tuple[int, int, float]] = {
    "decide": (4, 64, 5.0),  # decisions that wait on the database (campaigns with caps)
    "write": (4, 64, 5.0),
    "read": (4, 64, 5.0),
    "slow": (1, 4, 30.0),
    "pipeline": (1, 1, 3600.0),
}


class WorkPools:
    def __init__(
        self, metrics: Metrics, pools: dict[str, tuple[int, int, float]] | None = None
    ) -> None:
        self.metrics = metrics
        self.limits = dict(pools or POOLS)
        self._executors = {
            kind: ThreadPoolExecutor(threads, thread_name_prefix=f"offerloop-{kind}")
            for kind, (threads, _, _) in self.limits.items()
        }
        self._in_flight = dict.fromkeys(self.limits, 0)
        self._lock = threading.Lock()

    def in_flight(self, kind: str) -> int:
        return self._in_flight[kind]

    async def run(self, kind: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the ``kind`` pool; ``Overloaded`` at once when the class is full,
        ``BackendUnavailable`` when it does not finish within the class's deadline."""
        _, most, timeout = self.limits[kind]
        with self._lock:
            if self._in_flight[kind] >= most:
                self.metrics.shed.labels(kind).inc()
                raise Overloaded(f"too many {kind} requests in flight ({most}); retry shortly")
            self._in_flight[kind] += 1
        try:
            # the work's store calls give up in time for this request to answer (and, for
            # events, to fall back to the journal): 60 % of the request's deadline
            end = time.monotonic() + 0.6 * timeout
            fut: Future[T] = self._executors[kind].submit(_within, end, fn, *args)
        except BaseException:
            self._release(kind)
            raise
        fut.add_done_callback(lambda _f: self._release(kind))
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout)
        except TimeoutError:
            self.metrics.request_timeouts.labels(kind).inc()
            raise BackendUnavailable(
                f"the request did not finish within {timeout:g} s (a store is slow or "
                "unavailable); retry later"
            ) from None

    def _release(self, kind: str) -> None:
        with self._lock:
            self._in_flight[kind] -= 1

    def close(self) -> None:
        for ex in self._executors.values():
            ex.shutdown(wait=False, cancel_futures=True)


def _within(end: float, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` with its store calls ending by ``end`` (monotonic); not started at all
    when the work waited in the queue until then: its request is being answered 503, and work
    done now (a decision logged, a show counted) would be for nobody."""
    left = end - time.monotonic()
    if left <= 0:
        raise BackendUnavailable("the request waited too long for a worker; not started")
    with deadline(left):
        return fn(*args)


class LoopLag:
    """How late the event loop is: a ticker every ``interval`` measures its own delay."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self._due = 0.0  # when the ticker should run next (monotonic); 0: not started
        self._last = 0.0  # the delay the ticker measured last
        self._over_since: float | None = None  # when the delay last rose above the target
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start ticking on the running loop (again, if the loop it ticked on is gone)."""
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._due = time.monotonic() + self.interval
            self._last = 0.0
            self._task = loop.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self._last = max(0.0, now - self._due)
            self._due = now + self.interval

    def now_ms(self) -> float:
        """The loop's current delay: the last measured one, or more if the ticker itself is
        overdue (the loop is busy right now)."""
        if not self._due:
            return 0.0
        return 1000.0 * max(self._last, time.monotonic() - self._due)

    def overloaded(self, target_ms: float) -> bool:
        """Whether the loop has been later than ``target_ms`` for ``5 × target_ms`` without
        a break (a delay of d ms means it has been late for d - target ms at least)."""
        lag = self.now_ms()
        now = time.monotonic()
        if lag <= target_ms:
            self._over_since = None
            return False
        began = now - (lag - target_ms) / 1000.0
        if self._over_since is None or began < self._over_since:
            self._over_since = began
        return now - self._over_since >= 5 * target_ms / 1000.0

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
