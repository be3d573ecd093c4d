"""The hot route: ``POST /v1/decide`` answered in plain ASGI.

At 1,000 decisions/s on two cores the web framework's share of a request (routing,
dependency resolution, validating the body as a Python object, validating the answer again
as a response model, two middleware layers) cost more than the decision itself
(docs/benchmarks.md). This middleware answers a well-formed decide request directly: the
body is validated by the same pydantic model (``DecideIn``, parsed from JSON bytes by
pydantic-core), errors raised by the decision get the same answers as everywhere
(``serving._errors.error_answer``), and the request is counted in the same metrics. Every
other request, and a decide request that is not well-formed JSON for ``DecideIn``, goes to
the full application unchanged (the body was read once, by ``serving._edge``), so every error
answer still comes from one place and the OpenAPI document still describes the route.

The decision itself runs on the event loop: it never blocks on a store (features have a
short timeout and a breaker; the journal append is a ``write(2)``; deployments are re-read
by a background thread under ``offerloop serve``), and a thread hop would cost more than
the whole decision. The one exception is a campaign with frequency caps, whose decision
reads and writes the database (``backends.CapLedger``): it runs in the ``decide`` work pool
with that pool's deadline (``serving._pools``), so a slow database never stalls the loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from offerloop.serving._api import DecideIn, decide_body
from offerloop.serving._edge import BODY_KEY
from offerloop.serving._errors import error_answer
from offerloop.serving._pools import WorkPools

if TYPE_CHECKING:
    from offerloop._system import Offerloop
    from offerloop.decisions import Decision

__all__ = ["HotDecide", "decide"]

_PATH = "/v1/decide"


class HotDecide:
    def __init__(self, app: ASGIApp, system: Offerloop, pools: WorkPools) -> None:
        self.app = app
        self.system = system
        self.pools = pools

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = scope.get(BODY_KEY)  # read (and size-checked) by serving._edge
        if (
            scope["type"] != "http"
            or scope["path"] != _PATH
            or scope["method"] != "POST"
            or body is None
            or not _json(scope)
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            req = DecideIn.model_validate_json(body)
        except ValidationError:  # the full application names the problems
            await self.app(scope, receive, send)
            return
        metrics = self.system.metrics
        headers: dict[str, str] | None = None
        try:
            d = await decide(self.system, self.pools, req.player_id, req.campaign, req.context)
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


async def decide(
    system: Offerloop,
    pools: WorkPools,
    player_id: str,
    campaign: str | None,
    context: Mapping[str, Any],
) -> Decision:
    """One decision: on the event loop, or in the ``decide`` pool when the campaign has caps
    (its decision waits on the database)."""
    c = system.campaign(campaign)
    if c.caps:
        return await pools.run("decide", system.decide, player_id, campaign, context)
    return system.decide(player_id, campaign, context)


def _json(scope: Scope) -> bool:
    """A JSON body (``application/json``)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False
