"""Online feature state in Redis, shared by several service processes.

Key layout (``prefix`` = setting ``redis_prefix``, ``digest`` = the first 12 hex digits of
the feature definitions' sha256, so new definitions never read state folded by old ones):

* ``{prefix}{digest}:p:{<bucket>}:{player_id}``: one string per player, the JSON of its state
  (recent events of each stream plus the summary of older ones). A feature read is one
  ``GET``. ``<bucket>`` (in braces: a Redis Cluster *hash tag*) is one of ``BUCKETS`` buckets
  of the player id's CRC-32: every key of a bucket lives in one cluster slot, so a batch's
  players can be updated in one transaction per bucket.
* ``{prefix}{digest}:{meta}:cursor``: where the state stands in the event log (floor, scan,
  holes; ``features._online.Cursor``), moved by the follower (``features._follow``).
* ``{prefix}{digest}:{meta}:folded``: a sorted set of the sequence numbers folded above the
  floor, so the follower skips what ingest already folded without reading player states.
  Cursor and marks share the ``{meta}`` tag: the follower moves both in one transaction.
* ``{prefix}{digest}:built``: set when a rebuild from the event log finished (the number of
  events replayed); a starting process rebuilds only when it is missing.
* ``{prefix}{digest}:rebuild-lock``: held (``SET NX``, 10 min TTL) by the one process that
  rebuilds, so starting processes do not rebuild at once.

The same keys serve a single Redis and a Redis Cluster (``redis_url`` names any node of it;
a cluster is recognised by ``INFO cluster`` and then spoken to with redis-py's cluster client,
which follows slot moves and fail-overs).

A batch of events is folded into its players' states by optimistic transactions, one per
group of keys that can share one: the whole batch on a single Redis, one per bucket on a
cluster. For a group: ``WATCH`` its keys, ``MGET`` them, ``GET`` the cursor (its floor), fold,
``MSET`` inside ``MULTI``/``EXEC``; a concurrent update of any of them by another process
makes the group fold again on the new states rather than be lost. Reading the floor after
the states is what makes this safe without watching the cursor (which a cluster keeps in
another slot): the floor only grows, and a state trimmed with some floor was written before
that floor could be read, so the floor read is at least the one the states were trimmed
with; skipping events at or below a floor that is newer still is right, as every such event
is folded. The batch's marks are added to the folded set after its states are written (a
mark never announces a state not yet written). Player keys carry no TTL: lifetime features
(purchases ever) need all history, and the state is bounded per player by compaction, not by
expiry.

Timeouts: reads on the decision path use their own connection with a short socket timeout
(``read_timeout``, setting ``online_read_timeout_ms``) behind a circuit breaker, so a Redis
that stalls or is gone costs one decision that timeout and the next ones nothing (they use
default features, and say so) until a probe finds Redis answering again. Writes and the
follower use a second connection with a longer timeout (``write_timeout``).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.cluster

from offerloop._errors import BackendUnavailable
from offerloop.backends._guard import Breaker
from offerloop.features._defs import FeatureSet
from offerloop.features._online import Change, Cursor, PlayerState, StateCodec

__all__ = ["BUCKETS", "RedisOnlineStore", "bucket_of"]

BUCKETS = 64  # hash tags of player keys: transactions per batch on a cluster, at most this many


def bucket_of(player_id: str) -> int:
    """The bucket (hash tag) of a player's key."""
    return zlib.crc32(player_id.encode()) % BUCKETS


def _is_cluster(url: str, **options: Any) -> bool:
    """Whether the node at ``url`` is part of a Redis Cluster (``INFO cluster``)."""
    probe = redis.Redis.from_url(url, **options)
    try:
        return bool(probe.info("cluster").get("cluster_enabled") == 1)
    finally:
        probe.close()


def _connect(url: str, cluster: bool, **options: Any) -> Any:
    """A client for ``url``: redis-py's cluster client for a cluster's node."""
    if cluster:
        return redis.cluster.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


class RedisOnlineStore:
    def __init__(
        self,
        url: str,
        prefix: str,
        features: FeatureSet,
        read_timeout: float = 0.025,
        write_timeout: float = 2.0,
    ) -> None:
        self.codec = StateCodec(features)
        self.base = f"{prefix}{features.digest()[:12]}:"
        self._cursor_key = f"{self.base}{{meta}}:cursor"
        self._folded_key = f"{self.base}{{meta}}:folded"
        self.breaker = Breaker("Redis", cooldown=1.0)
        try:
            options = {
                "socket_timeout": write_timeout,
                "socket_connect_timeout": min(write_timeout, 2.0),
            }
            self.cluster = _is_cluster(url, **options)
            self.client = _connect(url, self.cluster, **options)
            self.reader = _connect(
                url,
                self.cluster,
                socket_timeout=read_timeout,
                socket_connect_timeout=max(read_timeout, 0.5 if self.cluster else 0.0),
                retry_on_timeout=False,
            )
            self.client.ping()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis at {url} is unavailable: {exc}") from exc

    def _key(self, player_id: str) -> str:
        return f"{self.base}p:{{{bucket_of(player_id)}}}:{player_id}"

    def get(self, player_id: str) -> PlayerState | None:
        self.breaker.check()
        try:
            raw = self.reader.get(self._key(player_id))
        except redis.RedisError as exc:
            self.breaker.failure(str(exc))
            raise BackendUnavailable(f"Redis read failed: {exc}") from exc
        return self.codec.decode(raw) if raw else None

    def probe(self) -> bool:
        """While the breaker is open: one cheap round trip on the read connection; closes
        the breaker when Redis answers (the follower's thread calls this)."""
        if not self.breaker.is_open:
            return True
        return self.breaker.probe(self.reader.ping)

    def update_many(self, changes: Mapping[str, Change], marks: Sequence[int] = ()) -> None:
        """Fold a batch: one optimistic transaction per group of keys (the batch on a single
        Redis, each bucket on a cluster), then the marks; see the module doc."""
        if not changes and not marks:
            return
        self.breaker.check()  # down a moment ago: the log keeps the events; fold them later
        groups: dict[int, dict[str, Change]] = {}
        for player, change in changes.items():
            groups.setdefault(bucket_of(player) if self.cluster else 0, {})[player] = change
        try:
            for group in groups.values():
                self._update_group(group)
            floor = Cursor.from_json(self.client.get(self._cursor_key)).floor
            above = {str(s): s for s in marks if s > floor}
            if above:
                self.client.zadd(self._folded_key, above)
        except redis.RedisError as exc:
            self.breaker.failure(str(exc))
            raise BackendUnavailable(f"Redis update failed: {exc}") from exc

    def _update_group(self, changes: Mapping[str, Change]) -> None:
        keys = [self._key(p) for p in changes]
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(*keys)
                    # as commands: the cluster pipeline refuses its multi-key helpers, though
                    # all of a group's keys share one slot
                    raws = pipe.execute_command("MGET", *keys)
                    # after the states: at least the floor they were trimmed with
                    floor = Cursor.from_json(self.client.get(self._cursor_key)).floor
                    new: dict[str, bytes] = {}
                    for key, change, raw in zip(keys, changes.values(), raws, strict=True):
                        old = self.codec.decode(raw) if raw else None
                        st = change(old, floor)
                        if st is not None:
                            new[key] = self.codec.encode(st)
                    if not new:
                        pipe.unwatch()
                        return
                    pipe.multi()
                    pipe.execute_command("MSET", *[x for kv in new.items() for x in kv])
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue  # another process changed one of them: fold on its state

    def folded(self, seqs: Sequence[int]) -> set[int]:
        if not seqs:
            return set()
        try:
            scores = self.client.zmscore(self._folded_key, [str(s) for s in seqs])
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis read failed: {exc}") from exc
        return {s for s, sc in zip(seqs, scores, strict=True) if sc is not None}

    def cursor(self) -> Cursor:
        try:
            return Cursor.from_json(self.client.get(self._cursor_key))
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis read failed: {exc}") from exc

    def advance(self, expected: Cursor, new: Cursor) -> bool:
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(self._cursor_key)
                if Cursor.from_json(pipe.get(self._cursor_key)) != expected:
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.set(self._cursor_key, new.to_json())
                pipe.zremrangebyscore(self._folded_key, "-inf", new.floor)
                try:
                    pipe.execute()
                except redis.WatchError:
                    return False
                return True
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis update failed: {exc}") from exc

    def delete(self, player_id: str) -> None:
        self.client.delete(self._key(player_id))

    def clear(self) -> None:
        """Delete every key under this store's prefix and digest."""
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=f"{self.base}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.unlink(*batch)
                batch = []
        if batch:
            self.client.unlink(*batch)

    # -- rebuild coordination ------------------------------------------------------------
    def built(self) -> int | None:
        raw = self.client.get(f"{self.base}built:v2")
        return int(raw) if raw is not None else None

    def mark_built(self, events: int) -> None:
        self.client.set(f"{self.base}built:v2", events)

    def try_rebuild_lock(self, ttl_seconds: int = 600) -> bool:
        return bool(self.client.set(f"{self.base}rebuild-lock", 1, nx=True, ex=ttl_seconds))

    def release_rebuild_lock(self) -> None:
        self.client.delete(f"{self.base}rebuild-lock")

    def close(self) -> None:
        self.client.close()
        self.reader.close()
