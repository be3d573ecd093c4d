"""Online feature state in Redis, shared by several service processes.

Key layout (``prefix`` = setting ``redis_prefix``, ``digest`` = the first 12 hex digits of
the feature definitions' sha256, so new definitions never read state folded by old ones):

* ``{prefix}{digest}:p:{player_id}``: one string per player, the JSON of its state (recent
  events of each stream plus the summary of older ones). A feature read is one ``GET``.
* ``{prefix}{digest}:built``: set when a rebuild from the event log finished (the number of
  events replayed); a starting process rebuilds only when it is missing.
* ``{prefix}{digest}:rebuild-lock``: held (``SET NX``, 10 min TTL) by the one process that
  rebuilds, so starting processes do not rebuild at once.

A batch of events is folded into its players' states in one optimistic transaction:
``WATCH`` their keys, ``MGET``, fold, ``MSET`` inside ``MULTI``/``EXEC`` (three round trips per
batch). Atomic per player; a concurrent update of any of them by another process makes the
batch fold again on the new states rather than be lost. Player keys carry no TTL: lifetime
features (purchases ever) need all history, and the state is bounded per player by compaction,
not by expiry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import redis

from offerloop._errors import BackendUnavailable
from offerloop.features._defs import FeatureSet
from offerloop.features._online import PlayerState, StateCodec

__all__ = ["RedisOnlineStore"]


class RedisOnlineStore:
    def __init__(self, url: str, prefix: str, features: FeatureSet) -> None:
        self.codec = StateCodec(features)
        self.base = f"{prefix}{features.digest()[:12]}:"
        try:
            self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            self.client.ping()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis at {url} is unavailable: {exc}") from exc

    def _key(self, player_id: str) -> str:
        return f"{self.base}p:{player_id}"

    def get(self, player_id: str) -> PlayerState | None:
        try:
            raw = self.client.get(self._key(player_id))
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis read failed: {exc}") from exc
        return self.codec.decode(raw) if raw else None  # type: ignore[arg-type]

    def put(self, player_id: str, state: PlayerState) -> None:
        self.client.set(self._key(player_id), self.codec.encode(state))

    def update(self, player_id: str, change: Callable[[PlayerState | None], PlayerState]) -> None:
        try:
            self._update(self._key(player_id), change)
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis update failed: {exc}") from exc

    def _update(self, key: str, change: Callable[[PlayerState | None], PlayerState]) -> None:
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    old = self.codec.decode(raw) if raw else None  # type: ignore[arg-type]
                    new = self.codec.encode(change(old))
                    pipe.multi()
                    pipe.set(key, new)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue  # another process updated this player: fold again on its state

    def update_many(
        self, changes: Mapping[str, Callable[[PlayerState | None], PlayerState]]
    ) -> None:
        """One optimistic transaction for a whole batch: WATCH every key, MGET, fold, MSET in
        MULTI/EXEC (three round trips); a concurrent change to any of them folds again."""
        if not changes:
            return
        keys = [self._key(p) for p in changes]
        try:
            with self.client.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(*keys)  # type: ignore[no-untyped-call]
                        raws = pipe.mget(keys)
                        new = {
                            key: self.codec.encode(change(self.codec.decode(raw) if raw else None))  # type: ignore[arg-type]
                            for key, change, raw in zip(keys, changes.values(), raws, strict=True)
                        }
                        pipe.multi()
                        pipe.mset(new)
                        pipe.execute()
                        return
                    except redis.WatchError:
                        continue
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
        raw = self.client.get(f"{self.base}built")
        return int(raw) if raw is not None else None

    def mark_built(self, events: int) -> None:
        self.client.set(f"{self.base}built", events)

    def try_rebuild_lock(self, ttl_seconds: int = 600) -> bool:
        return bool(self.client.set(f"{self.base}rebuild-lock", 1, nx=True, ex=ttl_seconds))

    def release_rebuild_lock(self) -> None:
        self.client.delete(f"{self.base}rebuild-lock")

    def close(self) -> None:
        self.client.close()
