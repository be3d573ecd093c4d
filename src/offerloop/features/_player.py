"""The features served for a player, as one service: the online state (in memory or Redis),
built from the event log on first use and kept following it, the external sources (SQL
lookups, batch files), a deliberate delay, and the defaults used when the store cannot be
read. The decision engine calls it directly; ingest hands it the events just stored.

* **Warm-up:** the online state is built before the first read (``serve`` warms it at
  start; CLI commands that never read features never pay for it). In process, from the
  newest snapshot (``features._snapshot``, written every ``snapshot_interval_seconds`` and
  when the service stops) and the log after it, or, without a usable one, from the whole
  event log.
  With Redis the state is shared: one process rebuilds under a lock while the others wait
  (at most ``REBUILD_WAIT_SECONDS``), and a state already built for these definitions is
  only caught up with the log.
* **Following the log:** ``follow`` folds what the log has and the state lacks (a gap in
  sequence numbers is waited for longer than any transaction can stay open) and exports the
  lag; ``serve`` runs it in the background, library use every ``online_follow_seconds`` of
  ingest.
* **Delay:** with ``feature_delay_seconds`` set, values are deliberately stale: recomputed
  from the log as of that long ago (the lesson of 24-hour ETL jobs, measurable).
* **Faults:** a store that cannot be read or written is counted; reads fall back to the
  defaults (the caller's choice), writes are deferred to the follower.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from offerloop._clock import Clock
from offerloop._errors import BackendUnavailable
from offerloop._metrics import Metrics
from offerloop._settings import Settings
from offerloop.backends import Backend, EventRecord
from offerloop.features._batch_source import BatchSources
from offerloop.features._defs import Batch, FeatureSet, FeatureValue, Sql
from offerloop.features._follow import LogFollower
from offerloop.features._online import (
    Cursor,
    FeatureReading,
    InMemoryOnlineStore,
    OnlineFeatures,
    StateCodec,
)
from offerloop.features._reference import reference_features
from offerloop.features._snapshot import (
    SnapshotInfo,
    SnapshotUnusable,
    gc_paused,
    read_snapshot,
    write_snapshot,
)
from offerloop.features._sql_source import SqlSources

if TYPE_CHECKING:  # redis-py is imported only when a redis_url is set
    from offerloop.features._redis import RedisOnlineStore

__all__ = ["REBUILD_WAIT_SECONDS", "SNAPSHOT_FILE", "PlayerFeatures"]

REBUILD_WAIT_SECONDS = 600.0  # how long a process waits for another one's Redis rebuild
SNAPSHOT_FILE = "online-state.snapshot"  # in data_dir
_log = logging.getLogger("offerloop.features")


class PlayerFeatures:
    """The served features of players over one event log (see the module doc)."""

    def __init__(
        self,
        features: FeatureSet,
        backend: Backend,
        clock: Clock,
        metrics: Metrics,
        settings: Settings,
    ) -> None:
        self.features = features
        self.backend = backend
        self.clock = clock
        self.metrics = metrics
        self.settings = settings
        self.redis: RedisOnlineStore | None = None
        if settings.redis_url:
            from offerloop.features._redis import RedisOnlineStore

            self.redis = RedisOnlineStore(
                settings.redis_url,
                settings.redis_prefix,
                features,
                read_timeout=settings.online_read_timeout_ms / 1000.0,
                # an event batch's fold gives up well before its request's deadline
                write_timeout=min(2.0, settings.request_timeout_seconds / 3),
            )
        self._online = OnlineFeatures(features, self.redis)
        self.follower = LogFollower(
            self._online,
            backend,
            clock,
            horizon=max(60.0, 3 * settings.database_timeout_seconds),
        )
        self.sql_sources = SqlSources(
            features.of_kind(Sql),
            on_fallback=lambda src, why: metrics.feature_fallbacks.labels(src, why).inc(),
        )
        self.batch_sources = BatchSources(features.of_kind(Batch), backend)
        # set by the façade under ``serve``: background tasks follow the log and poll the
        # batch sources, so reads and ingest never do it themselves
        self.in_background = False
        self.rebuilt_events = 0
        self.rebuild_seconds = 0.0
        # in process (no Redis): the snapshot a start restored, or why it did not
        snapshots = self.redis is None and settings.snapshot_interval_seconds > 0
        self.snapshot_path = settings.path / SNAPSHOT_FILE if snapshots else None
        self.restored: SnapshotInfo | None = None
        self.restore_note = ""
        self._snapshot_cursor: Cursor | None = None  # of the last snapshot read or written
        self._snapshot_lock = threading.Lock()  # one write at a time (schedule and stop)
        self._ready = False
        self._lock = threading.Lock()
        self._next_follow = 0.0
        self._next_poll = 0.0
        self.poll_batches()

    # -- the online state ----------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether the online state has been built (or found built) in this process."""
        return self._ready

    @property
    def online(self) -> OnlineFeatures:
        """The online feature state, rebuilt from the event log on first use."""
        if not self._ready:
            self.warm()
        return self._online

    def warm(self) -> None:
        """Build the online state if not done yet (see the module doc), and catch it up."""
        with self._lock:
            if self._ready:
                return
            store = self.redis
            if store is not None and store.built() is not None:
                self._ready = True
                self._catch_up()
                return
            if store is not None and not store.try_rebuild_lock():
                deadline = time.monotonic() + REBUILD_WAIT_SECONDS
                while store.built() is None and time.monotonic() < deadline:
                    time.sleep(0.1)  # another process is rebuilding
                self._ready = True
                self._catch_up()
                return
            if store is None and self._restore():
                self._ready = True
                return
            try:
                self.rebuild()
            finally:
                if store is not None:
                    store.release_rebuild_lock()
            self._ready = True

    def rebuild(self) -> int:
        """Replay the whole event log into the online state (``offerloop features rebuild``);
        returns the number of events folded."""
        started = time.perf_counter()
        with gc_paused():
            self.rebuilt_events = self.follower.rebuild()
        self.rebuild_seconds = time.perf_counter() - started
        self.metrics.online_start.labels("log").set(self.rebuild_seconds)
        if self.redis is not None:
            self.redis.mark_built(self.rebuilt_events)
        return self.rebuilt_events

    def _restore(self) -> bool:
        """The in-process state from the snapshot and the log after it; False (and
        ``restore_note`` says why) when there is no usable snapshot."""
        path, store = self.snapshot_path, self._online.store
        if path is None or not isinstance(store, InMemoryOnlineStore):
            return False
        started = time.perf_counter()
        try:
            states, marks, cursor, info = read_snapshot(
                path, self.features.digest(), self.backend.last_event_seq()
            )
        except FileNotFoundError:
            self.restore_note = "no snapshot yet"
            return False
        except (SnapshotUnusable, OSError) as exc:
            self.restore_note = f"snapshot {path} not used: {exc}"
            self.metrics.errors.labels("snapshot").inc()
            _log.warning("%s; rebuilding the online state from the whole log", self.restore_note)
            return False
        store.restore(states, marks, cursor, StateCodec(self.features))
        self._snapshot_cursor = cursor
        with gc_paused():
            self.rebuilt_events = self.follower.catch_up()
        self.rebuild_seconds = time.perf_counter() - started
        self.metrics.online_start.labels("snapshot").set(self.rebuild_seconds)
        self.restored = info
        self.restore_note = (
            f"snapshot of {info.players} players read in {info.seconds:.2f} s, "
            f"{self.rebuilt_events} events after it folded"
        )
        return True

    def save_snapshot(self, if_changed: bool = False) -> SnapshotInfo | None:
        """Write a snapshot of the in-process online state (None with Redis, whose state
        outlives the process, before the state is built, or, ``if_changed``, when the log
        cursor has not moved since the last snapshot read or written). Raises OSError when it
        cannot be written: the previous snapshot stays."""
        path, store = self.snapshot_path, self._online.store
        if path is None or not self._ready or not isinstance(store, InMemoryOnlineStore):
            return None
        with self._snapshot_lock:
            if if_changed and store.cursor() == self._snapshot_cursor:
                return None
            info = write_snapshot(
                store, StateCodec(self.features), self.features.digest(), path, self.clock.now()
            )
            self._snapshot_cursor = info.cursor
        self.metrics.online_snapshot_at.set(self.clock.now())
        return info

    def _catch_up(self) -> None:
        with contextlib.suppress(BackendUnavailable):  # the follower retries later
            self.follower.catch_up()

    def follow(self) -> None:
        """One round of following the log: fold what is missing (at most 20 batches), export
        the lag and the stores' health. Raises ``BackendUnavailable`` when a store failed
        (counted)."""
        if not self._ready:
            return
        m = self.metrics
        if self.redis is not None:
            self.redis.probe()
            m.dependency_up.labels("redis").set(0 if self.redis.breaker.is_open else 1)
        breaker = getattr(self.backend, "breaker", None)
        if breaker is not None:
            m.dependency_up.labels("database").set(0 if breaker.is_open else 1)
        try:
            for _ in range(20):
                step = self.follower.step()
                if step.read < self.follower.batch and not step.lag_events:
                    break
            m.online_lag_events.set(step.lag_events)
            m.online_lag_seconds.set(0.0)
        except BackendUnavailable:
            m.backend_errors.labels("online_store", "follow").inc()
            with contextlib.suppress(BackendUnavailable):
                events, seconds = self.follower.lag_of_failure()
                m.online_lag_events.set(events)
                m.online_lag_seconds.set(seconds)
            raise

    def follow_if_due(self) -> None:
        """Library use (no background tasks): follow the log every ``online_follow_seconds``."""
        if self.in_background or time.monotonic() < self._next_follow:
            return
        self._next_follow = time.monotonic() + self.settings.online_follow_seconds
        with contextlib.suppress(BackendUnavailable):
            self.follow()

    def fold(self, records: Sequence[EventRecord]) -> bool:
        """Fold events just stored into the online state, if it is built. False: the store
        cannot take them now (counted); the follower folds them from the log later."""
        if not self._ready or not records:
            return True
        started = time.perf_counter()
        try:
            self._online.apply(records, self.clock.now())
            seqs = sorted(r.seq for r in records if r.seq)
            self.follower.folded_run(seqs)  # the follower need not read them back
            return True
        except BackendUnavailable:
            self.metrics.backend_errors.labels("online_store", "update").inc()
            self.metrics.online_deferred.inc(len(records))
            return False
        finally:
            self.metrics.feature_update_duration.observe(time.perf_counter() - started)

    # -- external sources ----------------------------------------------------------------
    def poll_batches(self) -> int:
        """Load batch-source files that landed since the last poll."""
        self._next_poll = time.monotonic() + self.settings.batch_poll_seconds
        return self.batch_sources.poll(self.clock.now()) if self.batch_sources.sources else 0

    def _external(self, player_id: str, as_of: float) -> dict[str, FeatureValue]:
        out: dict[str, FeatureValue] = {}
        if self.sql_sources.sources:
            out.update(self.sql_sources.lookup(player_id))
        if self.batch_sources.sources:
            if not self.in_background and time.monotonic() >= self._next_poll:
                self.poll_batches()
            out.update(self.batch_sources.lookup(player_id, as_of))
        return out

    # -- reads ---------------------------------------------------------------------------
    def of(
        self, player_id: str, as_of: float, context: Mapping[str, Any] | None = None
    ) -> dict[str, FeatureValue]:
        """The feature vector served for a player at ``as_of`` (normally now): one round trip
        to the online store, or, with ``feature_delay_seconds``, recomputed from the log as
        of that long ago."""
        delay = self.settings.feature_delay_seconds
        if delay > 0:
            events = self.backend.player_events(player_id, as_of - delay)
            external = self._external(player_id, as_of - delay)
            return reference_features(self.features, events, as_of - delay, context, external)
        online = self.online
        state = online.store.get(player_id)
        if state is not None and state.newest_received > -math.inf:
            self.metrics.feature_freshness.observe(max(0.0, as_of - state.newest_received))
        readings = online.read_state(state, as_of, context, self._external(player_id, as_of))
        return {k: r.value for k, r in readings.items()}

    def readings(
        self, player_id: str, as_of: float, context: Mapping[str, Any] | None = None
    ) -> dict[str, FeatureReading]:
        """Like :meth:`of`, with the event time behind each value."""
        return self.online.read_detailed(
            player_id, as_of, context, self._external(player_id, as_of)
        )

    def defaults(
        self, player_id: str, as_of: float, context: Mapping[str, Any] | None = None
    ) -> dict[str, FeatureValue]:
        """Every feature at its default (request context still applies): what a decision
        uses when the online store cannot be read."""
        return {k: r.value for k, r in self._online.read_state(None, as_of, context).items()}

    def close(self) -> None:
        """Close the SQL sources and the Redis connection; a service (``in_background``)
        with its state in process writes a last snapshot first."""
        if self.in_background and self.snapshot_path is not None and self._ready:
            try:
                with contextlib.suppress(BackendUnavailable):
                    self.follower.catch_up()  # the cursor past what ingest folded last
                self.save_snapshot(if_changed=True)
            except OSError as exc:
                self.metrics.errors.labels("snapshot").inc()
                _log.warning("the online state's snapshot could not be written: %s", exc)
        self.sql_sources.close()
        if self.redis is not None:
            self.redis.close()
