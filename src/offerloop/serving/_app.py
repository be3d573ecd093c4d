"""The HTTP service: FastAPI over an :class:`~offerloop.Offerloop`."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Path
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offerloop import __version__
from offerloop._clock import format_ts
from offerloop.events import EventBatch
from offerloop.monitoring import Metrics
from offerloop.serving._admin import admin_router
from offerloop.serving._api import (
    DecideIn,
    DecideOut,
    DecisionOut,
    FeatureOut,
    IngestOut,
    ModelOut,
    ModelsOut,
    PlayerFeaturesOut,
    ShadowOut,
    decide_body,
)
from offerloop.serving._errors import install_error_handlers
from offerloop.serving._hot import HotDecide
from offerloop.serving._monitoring import monitoring_router

if TYPE_CHECKING:
    from offerloop._system import Offerloop

__all__ = ["MAX_BODY_BYTES", "create_app"]

MAX_BODY_BYTES = 16 * 1024 * 1024
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON"},
    404: {"description": "Unknown campaign or decision"},
    413: {"description": "Body too large"},
    422: {"description": "Invalid input: the body names each field and problem"},
    503: {"description": "A backend is unavailable; retry later"},
}


class _Observe:
    """ASGI middleware: request count and duration per route template; body size limit."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                resp = JSONResponse(
                    {
                        "error": {
                            "type": "too_large",
                            "message": f"body over {MAX_BODY_BYTES} bytes",
                            "problems": [],
                        }
                    },
                    status_code=413,
                )
                await resp(scope, receive, send)
                return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.http_requests.labels(path, method, str(status[0])).inc()
            self.metrics.http_duration.labels(path, method).observe(time.perf_counter() - start)


def create_app(system: Offerloop) -> FastAPI:
    app = FastAPI(
        title="offerloop",
        version=__version__,
        description="Personalised promotions, delivered continuously.",
        responses=_ERRORS,
    )
    install_error_handlers(app, system.metrics)
    app.add_middleware(_Observe, metrics=system.metrics)
    # outermost: well-formed decide requests skip the framework (serving._hot)
    app.add_middleware(HotDecide, system=system, max_body=MAX_BODY_BYTES)
    app.state.system = system

    @app.post("/v1/events", response_model=IngestOut, tags=["events"])
    async def post_events(batch: EventBatch) -> IngestOut:
        """Append events to the log: durable before the answer, idempotent on ``event_id``.

        At most ``max_batch_events`` (default 1000) per batch; an invalid batch writes nothing.
        """
        r = system.ingest(batch.events)
        return IngestOut(accepted=r.accepted, duplicates=r.duplicates)

    @app.post("/v1/decide", response_model=DecideOut, tags=["decisions"])
    async def post_decide(body: DecideIn) -> dict[str, Any]:
        """Choose an offer for a player; the decision is logged with its propensity."""
        # well-formed JSON requests are answered by serving._hot; this serves the rest
        return decide_body(system.decide(body.player_id, body.campaign, body.context))

    @app.get("/v1/decisions/{decision_id}", response_model=DecisionOut, tags=["decisions"])
    async def get_decision(
        decision_id: str = Path(min_length=1, max_length=128, pattern=r"^[\w\-]+$"),
    ) -> DecisionOut:
        """A logged decision with the revenue attributed to it so far."""
        r, reward = system.decision(decision_id)
        return DecisionOut(
            decision_id=r.decision_id,
            ts=format_ts(r.ts),
            player_id=r.player_id,
            campaign=r.campaign,
            offer_id=r.offer_id,
            model_version=r.model_version,
            mode=r.mode,
            propensity=r.propensity,
            features=dict(r.features),
            context=dict(r.context),
            shadows=[ShadowOut(**s.__dict__) for s in r.shadows],
            revenue=reward.revenue,
            purchases=reward.purchases,
            reward_final=reward.final,
            window_closes_at=format_ts(r.ts + system.window_seconds),
        )

    @app.get(
        "/v1/players/{player_id}/features", response_model=PlayerFeaturesOut, tags=["features"]
    )
    async def get_player_features(
        player_id: str = Path(min_length=1, max_length=128, pattern=r"^\S(.*\S)?$"),
    ) -> PlayerFeaturesOut:
        """Every feature's value as served now, and the newest event behind it."""
        now = system.clock.now()
        readings = system.player_readings(player_id, now)
        return PlayerFeaturesOut(
            player_id=player_id,
            as_of=format_ts(now),
            features={
                name: FeatureOut(
                    value=r.value,
                    newest_event_ts=None
                    if r.newest_event_ts is None
                    else format_ts(r.newest_event_ts),
                )
                for name, r in readings.items()
            },
        )

    def model_out(version: str) -> ModelOut:
        m = system.registry.get(version)
        return ModelOut(
            version=m.version,
            campaign=m.campaign,
            kind=m.kind,
            created_at=format_ts(m.created_at),
            mode=system.deployments.state(m.campaign).mode_of(m.version),
            sha256=m.sha256,
            params=dict(m.params),
            lineage=dict(m.lineage),
            metrics=dict(m.metrics),
        )

    @app.get("/v1/models", response_model=ModelsOut, tags=["models"])
    async def list_models(campaign: str | None = None) -> ModelsOut:
        """Every registered version (optionally of one campaign), oldest first."""
        if campaign is not None:
            system.campaign(campaign)  # 404 for an unknown campaign
        return ModelsOut(models=[model_out(m.version) for m in system.registry.list(campaign)])

    @app.get("/v1/models/{version}", response_model=ModelOut, tags=["models"])
    async def get_model(version: str = Path(min_length=1, max_length=128)) -> ModelOut:
        """One version: lineage (data window, rows, features hash, code), parameters, and
        offline estimates against the release."""
        return model_out(version)

    app.include_router(admin_router(system))
    app.include_router(monitoring_router(system))

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, Any]:
        system.backend.generation()  # raises BackendUnavailable (503) if the store is gone
        return {"status": "ok", "backend": system.backend.name, "version": __version__}

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics() -> Response:
        _refresh_deployment_gauge(system)
        return Response(system.metrics.render(), media_type="text/plain; version=0.0.4")

    return app


_SAFE = re.compile(r"^[\w.\-:]+$")


def _refresh_deployment_gauge(system: Offerloop) -> None:
    gauge = system.metrics.released_info
    gauge.clear()
    for c in system.campaigns.values():
        st = system.deployments.state(c.id)
        if st.released and _SAFE.match(st.released):
            gauge.labels(c.id, st.released, "released").set(1)
        for v in st.shadows:
            gauge.labels(c.id, v, "shadow").set(1)
        if st.canary:
            gauge.labels(c.id, st.canary, "canary").set(st.canary_share)
