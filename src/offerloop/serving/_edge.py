"""The edge of the service: the first thing every request meets (outermost ASGI layer).

* **Body limits that hold.** The body is read here, chunk by chunk, and counted as it
  arrives: over ``max_body`` bytes (declared or not: chunked uploads are counted too) the
  answer is 413 and nothing further is read; a body that stalls for ``body_timeout``
  seconds between chunks is answered 408. The inner layers get the body already read
  (``scope["offerloop.body"]``), so the framework never buffers more than the limit.
* **Load shedding.** With a :class:`~offerloop.serving._pools.LoopLag` (``offerloop serve``),
  a decide request that meets an event loop that has run more than ``shed_ms`` late for a
  while (``LoopLag.overloaded``) is answered 503 + ``Retry-After`` at once: it has already
  waited too long to be answered in time, and answering it anyway would make every request
  behind it late too.

Every answer given here has the one JSON error shape (``serving._errors``) and is counted
in the request metrics.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offerloop._metrics import Metrics
from offerloop.serving._errors import error_body
from offerloop.serving._pools import LoopLag

__all__ = ["BODY_KEY", "Edge"]

BODY_KEY = "offerloop.body"
_WITH_BODY = {"POST", "PUT", "PATCH"}
_DECIDE = "/v1/decide"


class Edge:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body: int,
        body_timeout: float = 10.0,
        lag: LoopLag | None = None,
        shed_ms: float = 0.0,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.lag = lag
        self.shed_ms = shed_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.lag is not None:
            self.lag.start()
            if self.shed_ms and scope["path"] == _DECIDE and self.lag.overloaded(self.shed_ms):
                self.metrics.shed.labels("decide").inc()
                await self._answer(
                    scope,
                    send,
                    503,
                    "overloaded",
                    "the service is overloaded; retry shortly",
                    {"retry-after": "1"},
                )
                return
        if scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._answer(scope, send, 413, "too_large", f"body over {self.max_body} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                self.metrics.connection_timeouts.labels("slow").inc()
                await self._answer(
                    scope,
                    send,
                    408,
                    "timeout",
                    f"the body did not arrive within {self.body_timeout:g} s",
                    {"connection": "close"},
                )
                return
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._answer(
                    scope,
                    send,
                    413,
                    "too_large",
                    f"body over {self.max_body} bytes",
                    {"connection": "close"},
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        scope[BODY_KEY] = body
        await self.app(scope, _replay(body, receive), send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The inner app's lifespan, and the lag monitor stopped on shutdown."""

        async def wrapped_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and self.lag is not None:
                await self.lag.stop()
            return message

        await self.app(scope, wrapped_receive, send)

    async def _answer(
        self,
        scope: Scope,
        send: Send,
        status: int,
        kind: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        started = time.perf_counter()
        payload = json.dumps(error_body(kind, message)).encode()
        raw = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        raw.extend((k.encode(), v.encode()) for k, v in (headers or {}).items())
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})
        if status < 500:
            self.metrics.errors.labels("client").inc()
        path = scope["path"] if scope["path"] == _DECIDE else "unmatched"
        self.metrics.http_requests.labels(path, scope.get("method", ""), str(status)).inc()
        self.metrics.http_duration.labels(path, scope.get("method", "")).observe(
            time.perf_counter() - started
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands back the body already read, then the real stream (for a
    disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
