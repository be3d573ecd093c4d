"""SQL sources: feature values from a database the team already has, within a latency budget.

Each distinct (url, query) is one source; its features name the columns they take. A lookup
is served from a per-player cache while it is younger than ``cache_seconds``; otherwise the
query runs on the source's own worker thread and the caller waits at most ``timeout_ms``.
A slow or failing source falls back to the last value it returned for that player, or to the
features' defaults, and the fallback is counted (``offerloop_feature_fallbacks_total``). A
slow query that finishes late still refreshes the cache for the next lookup.

Such a table has no history, so it is not point-in-time: training uses the values logged
with each decision, and backfill refuses to copy today's values into the past.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any

from offerloop.features._defs import FeatureValue, Sql

__all__ = ["SqlSource", "SqlSources"]

Counter = Callable[[str, str], None]  # (source name, reason) → count a fallback


class SqlSource:
    def __init__(self, features: Sequence[Sql], on_fallback: Counter | None = None) -> None:
        self.features = list(features)
        first = self.features[0]
        self.url, self.query = first.url, first.query
        self.name = first.name if len(self.features) == 1 else f"{first.name}+"
        self.cache_seconds = min(f.cache_seconds for f in self.features)
        self.timeout = min(f.timeout_ms for f in self.features) / 1000.0
        self._on_fallback = on_fallback or (lambda source, reason: None)
        self._cache: dict[str, tuple[float, dict[str, FeatureValue]]] = {}
        self._pending: dict[str, Future[dict[str, FeatureValue] | None]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sql-{self.name}")
        self._local = threading.local()

    def close(self) -> None:
        """Close the worker's connection (after any query in flight) and stop the worker."""
        done = self._pool.submit(self._disconnect)
        self._pool.shutdown(wait=False)
        # a query still running: the worker closes the connection when it finishes
        with contextlib.suppress(Exception):
            done.result(timeout=2.0)

    def _disconnect(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    # -- the query, on the worker thread -------------------------------------------------
    def _connect(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.url.startswith("sqlite:///"):
                conn = sqlite3.connect(self.url[len("sqlite:///") :], check_same_thread=False)
            else:
                import psycopg

                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            self._local.conn = conn
        return conn

    def _fetch(self, player_id: str) -> dict[str, FeatureValue] | None:
        try:
            conn = self._connect()
            if self.url.startswith("sqlite:"):
                cur = conn.execute(self.query, (player_id,))
            else:
                cur = conn.execute(self.query.replace("?", "%s"), (player_id,))
            row = cur.fetchone()
            names = [d[0] for d in cur.description or ()]
        except Exception:
            self._local.conn = None  # reconnect next time
            raise
        if row is None:
            return None
        data = dict(zip(names, row, strict=False))
        return {f.name: f.coerce(data.get(f.column)) for f in self.features}

    def _store(self, player_id: str, fut: Future[dict[str, FeatureValue] | None]) -> None:
        with self._lock:
            self._pending.pop(player_id, None)
        if fut.cancelled() or fut.exception() is not None:
            return
        values = fut.result()
        with self._lock:
            self._cache[player_id] = (time.monotonic(), values or self._defaults())

    def _defaults(self) -> dict[str, FeatureValue]:
        return {f.name: f.default for f in self.features}

    # -- lookups -------------------------------------------------------------------------
    def lookup(self, player_id: str) -> dict[str, FeatureValue]:
        mono = time.monotonic()
        with self._lock:
            cached = self._cache.get(player_id)
            if cached is not None and mono - cached[0] < self.cache_seconds:
                return cached[1]
            fut = self._pending.get(player_id)
            started = fut is None
            if fut is None:
                fut = self._pool.submit(self._fetch, player_id)
                self._pending[player_id] = fut
        if started:  # outside the lock: a finished future runs the callback right here
            fut.add_done_callback(partial(self._store, player_id))
        try:
            values = fut.result(timeout=self.timeout)
        except FutureTimeout:
            return self._fallback(player_id, cached, "timeout")
        except Exception:
            return self._fallback(player_id, cached, "error")
        return values if values is not None else self._defaults()

    def _fallback(
        self, player_id: str, cached: tuple[float, dict[str, FeatureValue]] | None, reason: str
    ) -> dict[str, FeatureValue]:
        self._on_fallback(self.name, reason)
        return cached[1] if cached is not None else self._defaults()


class SqlSources:
    """All SQL sources of a feature set, grouped by (url, query)."""

    def __init__(self, features: Sequence[Sql], on_fallback: Counter | None = None) -> None:
        groups: dict[tuple[str, str], list[Sql]] = {}
        for f in features:
            groups.setdefault((f.url, f.query), []).append(f)
        self.sources = [SqlSource(g, on_fallback) for g in groups.values()]

    def lookup(self, player_id: str) -> dict[str, FeatureValue]:
        out: dict[str, FeatureValue] = {}
        for s in self.sources:
            out.update(s.lookup(player_id))
        return out

    def close(self) -> None:
        for s in self.sources:
            s.close()
