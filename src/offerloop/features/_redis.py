"""Online feature state in Redis, shared by several service processes.

Key layout (``prefix`` = setting ``redis_prefix``, ``digest`` = the first 12 hex digits of
the feature definitions' sha256, so new definitions never read state folded by old ones):

* ``{prefix}{digest}:p:{player_id}``: one string per player, the JSON of its state (recent
  events of each stream plus the summary of older ones). A feature read is one ``GET``.
* ``{prefix}{digest}:cursor``: where the state stands in the event log (floor, scan, holes;
  ``features._online.Cursor``), moved by the follower (``features._follow``).
* ``{prefix}{digest}:folded``: a sorted set of the sequence numbers folded above the floor,
  so the follower skips what ingest already folded without reading player states.
* ``{prefix}{digest}:built``: set when a rebuild from the event log finished (the number of
  events replayed); a starting process rebuilds only when it is missing.
* ``{prefix}{digest}:rebuild-lock``: held (``SET NX``, 10 min TTL) by the one process that
  rebuilds, so starting processes do not rebuild at once.

A batch of events is folded into its players' states in one optimistic transaction:
``WATCH`` their keys and the cursor, ``MGET``, fold, ``MSET`` + ``ZADD`` inside
``MULTI``/``EXEC`` (three round trips per batch). Atomic per player; a concurrent update of
any of them by another process makes the batch fold again on the new states rather than be
lost. Player keys carry no TTL: lifetime features (purchases ever) need all history, and the
state is bounded per player by compaction, not by expiry.

Timeouts: reads on the decision path use their own connection with a short socket timeout
(``read_timeout``, setting ``online_read_timeout_ms``) behind a circuit breaker, so a Redis
that stalls or is gone costs one decision that timeout and the next ones nothing (they use
default features, and say so) until a probe finds Redis answering again. Writes and the
follower use a second connection with a longer timeout (``write_timeout``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis

from offerloop._errors import BackendUnavailable
from offerloop.backends._guard import Breaker
from offerloop.features._defs import FeatureSet
from offerloop.features._online import Change, Cursor, PlayerState, StateCodec

__all__ = ["RedisOnlineStore"]


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
        self._cursor_key = f"{self.base}cursor"
        self._folded_key = f"{self.base}folded"
        self.breaker = Breaker("Redis", cooldown=1.0)
        try:
            self.client = redis.Redis.from_url(
                url, socket_timeout=write_timeout, socket_connect_timeout=min(write_timeout, 2.0)
            )
            self.reader = redis.Redis.from_url(
                url,
                socket_timeout=read_timeout,
                socket_connect_timeout=read_timeout,
                retry_on_timeout=False,
            )
            self.client.ping()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis at {url} is unavailable: {exc}") from exc

    def _key(self, player_id: str) -> str:
        return f"{self.base}p:{player_id}"

    def get(self, player_id: str) -> PlayerState | None:
        self.breaker.check()
        try:
            raw = self.reader.get(self._key(player_id))
        except redis.RedisError as exc:
            self.breaker.failure(str(exc))
            raise BackendUnavailable(f"Redis read failed: {exc}") from exc
        return self.codec.decode(raw) if raw else None  # type: ignore[arg-type]

    def probe(self) -> bool:
        """While the breaker is open: one cheap round trip on the read connection; closes
        the breaker when Redis answers (the follower's thread calls this)."""
        if not self.breaker.is_open:
            return True
        return self.breaker.probe(self.reader.ping)

    def update_many(self, changes: Mapping[str, Change], marks: Sequence[int] = ()) -> None:
        """One optimistic transaction for a whole batch: WATCH every key and the cursor,
        MGET, fold, MSET + ZADD in MULTI/EXEC; a concurrent change to any of them (or a
        moved floor) folds again."""
        if not changes and not marks:
            return
        self.breaker.check()  # down a moment ago: the log keeps the events; fold them later
        keys = [self._key(p) for p in changes]
        try:
            with self.client.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(*keys, self._cursor_key)  # type: ignore[no-untyped-call]
                        raws = pipe.mget([*keys, self._cursor_key])
                        floor = Cursor.from_json(raws[-1]).floor
                        new: dict[str, bytes] = {}
                        for key, change, raw in zip(keys, changes.values(), raws, strict=False):
                            old = self.codec.decode(raw) if raw else None  # type: ignore[arg-type]
                            st = change(old, floor)
                            if st is not None:
                                new[key] = self.codec.encode(st)
                        above = {str(s): s for s in marks if s > floor}
                        pipe.multi()
                        if new:
                            pipe.mset(new)
                        if above:
                            pipe.zadd(self._folded_key, above)
                        pipe.execute()
                        return
                    except redis.WatchError:
                        continue  # another process changed one of them: fold on its state
        except redis.RedisError as exc:
            self.breaker.failure(str(exc))
            raise BackendUnavailable(f"Redis update failed: {exc}") from exc

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
            with self.client.pipeline() as pipe:
                pipe.watch(self._cursor_key)  # type: ignore[no-untyped-call]
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
