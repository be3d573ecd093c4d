"""The replicated log on NATS JetStream (``backends._replicated``'s contract).

One stream (setting ``log_stream``) with one subject per topic (``<stream>.event``,
``<stream>.decision``), ``log_replicas`` replicas (a JetStream publish is acknowledged once a
majority of them stored the message), file storage, and a de-duplication window of a day: the
``Nats-Msg-Id`` header carries the record's id, so a retried append stores nothing twice.
Readers are durable pull consumers (explicit acks, redelivered after ``ack_wait``), one name
per topic shared by every process. nats-py is asynchronous: its client runs on an event loop
in a thread of its own, and the calls here wait on it with a deadline. The client follows
the cluster: it knows every server named in ``log_url`` and those the cluster announces,
and reconnects to another when one dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from offerloop._errors import BackendUnavailable
from offerloop.backends._replicated import Delivery

__all__ = ["NatsLog"]

T = TypeVar("T")
DEDUP_WINDOW = 86400.0
_FAILED = (TimeoutError, nats.errors.Error)  # asyncio's and concurrent's timeouts are this one


class NatsLog:
    def __init__(self, url: str, stream: str, replicas: int = 1, timeout: float = 5.0) -> None:
        self.servers = [u.strip() for u in url.split(",") if u.strip()]
        self.stream = stream
        self.replicas = replicas
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="offerloop-nats", daemon=True
        )
        self._thread.start()
        self._subs: dict[tuple[str, str], Any] = {}
        try:
            self._nc = self._run(
                nats.connect(
                    servers=self.servers,
                    connect_timeout=2,
                    reconnect_time_wait=0.2,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                )
            )
            self._js = self._nc.jetstream(timeout=timeout)
            self._run(self._ensure_stream())
        except Exception as exc:
            self.close()
            raise BackendUnavailable(f"NATS JetStream at {url} is unavailable: {exc}") from exc

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(self.timeout * 2 if timeout is None else timeout)
        except TimeoutError:
            fut.cancel()
            raise

    async def _ensure_stream(self) -> None:
        try:
            await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[f"{self.stream}.>"],
                    num_replicas=self.replicas,
                    storage=StorageType.FILE,
                    duplicate_window=DEDUP_WINDOW,
                )
            )

    def append(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[bool]:
        subject = f"{self.stream}.{topic}"

        async def publish_all() -> list[Any]:
            return await asyncio.gather(
                *(
                    self._js.publish(
                        subject, payload, headers={"Nats-Msg-Id": key}, stream=self.stream
                    )
                    for key, payload in items
                )
            )

        try:
            acks = self._run(publish_all())
        except _FAILED as exc:
            raise BackendUnavailable(f"the log did not confirm the append: {exc!r}") from exc
        return [not a.duplicate for a in acks]

    async def _sub(self, topic: str, consumer: str) -> Any:
        sub = self._subs.get((topic, consumer))
        if sub is None:
            sub = await self._js.pull_subscribe(
                f"{self.stream}.{topic}",
                durable=consumer,
                stream=self.stream,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0),
            )
            self._subs[(topic, consumer)] = sub
        return sub

    def read(self, topic: str, consumer: str, limit: int, wait: float) -> list[Delivery]:
        async def fetch() -> list[Any]:
            sub = await self._sub(topic, consumer)
            try:
                msgs: list[Any] = await sub.fetch(limit, timeout=max(wait, 0.05))
            except (TimeoutError, nats.errors.TimeoutError):
                return []
            return msgs

        try:
            msgs = self._run(fetch())
        except _FAILED as exc:
            raise BackendUnavailable(f"reading the log failed: {exc!r}") from exc
        return [Delivery((m.headers or {}).get("Nats-Msg-Id", ""), bytes(m.data), m) for m in msgs]

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        async def ack_all() -> None:
            await asyncio.gather(*(d.handle.ack() for d in deliveries))

        try:
            self._run(ack_all())
        except _FAILED as exc:
            # not acknowledged: redelivered later and stored once (idempotent on ids)
            raise BackendUnavailable(f"acknowledging to the log failed: {exc!r}") from exc

    def messages(self, topic: str) -> int:
        """How many messages the stream holds under a topic (operators, tests)."""
        subject = f"{self.stream}.{topic}"
        info = self._run(self._js.stream_info(self.stream, subjects_filter=subject))
        return int((info.state.subjects or {}).get(subject, 0))

    def leader(self) -> str:
        """The name of the server leading the stream now (operators, the fault tests)."""
        info = self._run(self._js.stream_info(self.stream))
        return str(info.cluster.leader if info.cluster is not None else "")

    def drop(self) -> None:
        """Delete the stream and everything in it (tests; an operator's reset)."""
        self._run(self._js.delete_stream(self.stream))

    def close(self) -> None:
        nc = getattr(self, "_nc", None)
        if nc is not None:
            with contextlib.suppress(Exception):
                self._run(nc.close(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
