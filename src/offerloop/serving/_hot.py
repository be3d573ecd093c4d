"""The hot route: ``POST /v1/decide`` answered in plain ASGI.

At 1,000 decisions/s on two cores the web framework's share of a request (routing,
dependency resolution, validating the body as a Python object, validating the answer again
as a response model, two middleware layers) cost more than the decision itself
(docs/benchmarks.md). This middleware answers a well-formed decide request directly: the
body is validated by the same pydantic model (``DecideIn``, parsed from JSON bytes by
pydantic-core), errors raised by the decision get the same answers as everywhere
(``serving._errors.error_answer``), and the request is counted in the same metrics. Every
other request, and a decide request that is not well-formed JSON for ``DecideIn``, goes to
the full application unchanged (with the body it has already read), so every error answer
still comes from one place and the OpenAPI document still describes the route.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offerloop.serving._api import DecideIn, decide_body
from offerloop.serving._errors import error_answer

if TYPE_CHECKING:
    from offerloop._system import Offerloop

__all__ = ["HotDecide"]

_PATH = "/v1/decide"


class HotDecide:
    def __init__(self, app: ASGIApp, system: Offerloop, max_body: int) -> None:
        self.app = app
        self.system = system
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != _PATH
            or scope["method"] != "POST"
            or not _plain_json(scope, self.max_body)
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body, more = await _read(receive, self.max_body)
        if more:  # too large or cut short: the full application answers
            await self.app(scope, _replay(body, receive, more=True), send)
            return
        try:
            req = DecideIn.model_validate_json(body)
        except ValidationError:  # the full application names the problems
            await self.app(scope, _replay(body, receive), send)
            return
        metrics = self.system.metrics
        headers: dict[str, str] | None = None
        try:
            d = self.system.decide(req.player_id, req.campaign, req.context)
        except Exception as exc:
            status, headers, doc = error_answer(exc, metrics)
        else:
            status, doc = 200, decide_body(d)
        payload = json.dumps(doc, separators=(",", ":")).encode()
        raw = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        raw.extend((k.lower().encode(), v.encode()) for k, v in (headers or {}).items())
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})
        metrics.http_requests.labels(_PATH, "POST", str(status)).inc()
        metrics.http_duration.labels(_PATH, "POST").observe(time.perf_counter() - started)


def _plain_json(scope: Scope, max_body: int) -> bool:
    """A JSON body (``application/json``) of a declared size within the limit."""
    json_body = sized = False
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
        elif name == b"content-length":
            sized = value.isdigit() and int(value) <= max_body
    return json_body and sized


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The whole body, unless it exceeds ``limit`` (then what was read, and True)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True  # disconnected
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), True
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive, more: bool = False) -> Receive:
    """A ``receive`` that first hands back the body already read, then the real stream."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay
