"""The HTTP service: FastAPI over an :class:`~offerloop.Offerloop`.

Layers, outermost first: ``serving._edge`` (body limits, load shedding), ``serving._hot``
(well-formed decide requests), then FastAPI with the request metrics and the one error
mapping. Every route that may wait on a store runs in a bounded pool of its class
(``serving._pools``), never on the event loop; ``/healthz`` and ``/metrics`` answer from
memory.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Path
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offerloop._clock import format_ts
from offerloop._metrics import Metrics
from offerloop._version import __version__
from offerloop.events import EventBatch
from offerloop.monitoring import Monitor
from offerloop.registry import model_doc
from offerloop.serving._admin import PipelineRunner, admin_router
from offerloop.serving._api import (
    CampaignOut,
    CampaignsOut,
    DecideIn,
    DecideOut,
    DecisionOut,
    FeatureOut,
    IngestOut,
    ModelOut,
    ModelsOut,
    OfferOut,
    PlayerFeaturesOut,
    ShadowOut,
    decide_body,
    errors,
)
from offerloop.serving._edge import Edge
from offerloop.serving._errors import install_error_handlers
from offerloop.serving._hot import HotDecide, decide
from offerloop.serving._monitoring import monitoring_router
from offerloop.serving._pools import POOLS, LoopLag, WorkPools
from offerloop.serving._routing import StrictJSONRoute

if TYPE_CHECKING:
    from offerloop._system import Offerloop

__all__ = ["MAX_BODY_BYTES", "create_app"]

MAX_BODY_BYTES = 16 * 1024 * 1024  # the default of setting max_body_bytes


class _Observe:
    """ASGI middleware: request count and duration per route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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


def create_app(
    system: Offerloop,
    *,
    service: bool = False,
    lag: LoopLag | None = None,
    pipeline: PipelineRunner | None = None,
) -> FastAPI:
    """The HTTP app of ``system``. ``service``: running under ``offerloop serve`` (sheds
    decide requests when the event loop runs late, setting ``load_shed_ms``, as measured by
    ``lag``: a :class:`~offerloop.serving._pools.LoopLag` of its own by default).
    ``pipeline``: what ``POST /v1/admin/pipeline/run`` calls (the CLI passes the pipeline's
    ``run_pipeline``; serving itself does not depend on the pipeline)."""
    s = system.settings
    timeout = s.request_timeout_seconds
    pools = WorkPools(
        system.metrics,
        {
            k: (threads, most, timeout if k in ("read", "write", "decide") else fixed)
            for k, (threads, most, fixed) in POOLS.items()
        },
    )
    app = FastAPI(
        title="offerloop",
        version=__version__,
        description="Personalised promotions, delivered continuously.",
        on_shutdown=[pools.close],
    )
    # the numbers behind the dashboard and the Prometheus gauges, for this app's lifetime
    monitor = Monitor(system)
    app.router.on_shutdown.append(monitor.close)
    app.router.route_class = StrictJSONRoute
    install_error_handlers(app, system.metrics)
    app.add_middleware(_Observe, metrics=system.metrics)
    # well-formed decide requests skip the framework (serving._hot)
    app.add_middleware(HotDecide, system=system, pools=pools)
    # outermost: body limits and load shedding (serving._edge)
    if not (service and s.load_shed_ms > 0):
        lag = None
    elif lag is None:
        lag = LoopLag()
    app.add_middleware(
        Edge,
        metrics=system.metrics,
        max_body=s.max_body_bytes,
        body_timeout=s.http_body_timeout_seconds,
        lag=lag,
        shed_ms=s.load_shed_ms,
    )
    app.state.system = system
    app.state.pools = pools
    app.state.monitor = monitor

    @app.post(
        "/v1/events",
        response_model=IngestOut,
        tags=["events"],
        responses=errors(400, 408, 413, 422, 503),
    )
    async def post_events(batch: EventBatch) -> IngestOut:
        """Append events to the log: durable before the answer, idempotent on ``event_id``.

        At most ``max_batch_events`` (default 1000) per batch; an invalid batch writes nothing.
        Each purchase naming a decision gets its attribution verdict in ``attribution``.
        """
        r = await pools.run("write", system.ingest, batch.events)
        return IngestOut(
            accepted=r.accepted,
            duplicates=r.duplicates,
            attribution=dict(r.attribution),
            stored=r.durable,
            features=r.online,
        )

    @app.post(
        "/v1/decide",
        response_model=DecideOut,
        tags=["decisions"],
        responses=errors(400, 404, 408, 413, 422, 503),
    )
    async def post_decide(body: DecideIn) -> dict[str, Any]:
        """Choose an offer for a player; the decision is logged with its propensity."""
        # well-formed JSON requests are answered by serving._hot; this serves the rest
        return decide_body(await decide(system, pools, body.player_id, body.campaign, body.context))

    @app.get(
        "/v1/decisions/{decision_id}",
        response_model=DecisionOut,
        tags=["decisions"],
        responses=errors(404, 422, 503),
    )
    async def get_decision(
        decision_id: str = Path(min_length=1, max_length=128, pattern=r"^[\w\-]+$"),
    ) -> DecisionOut:
        """A logged decision with the revenue attributed to it so far (shadow scores appear
        once they are scored, moments after the answer)."""
        r, reward = await pools.run("read", system.decision, decision_id)
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
        "/v1/players/{player_id}/features",
        response_model=PlayerFeaturesOut,
        tags=["features"],
        responses=errors(422, 503),
    )
    async def get_player_features(
        player_id: str = Path(min_length=1, max_length=128, pattern=r"^\S(.*\S)?$"),
    ) -> PlayerFeaturesOut:
        """Every feature's value as served now, and the newest event behind it."""
        now = system.clock.now()
        readings = await pools.run("read", system.player_features.readings, player_id, now)
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

    def campaign_out(campaign_id: str | None) -> CampaignOut:
        c = system.campaign(campaign_id)  # 404 for an unknown campaign
        st = system.deployments.state(c.id)
        return CampaignOut(
            campaign=c.id,
            name=c.name,
            default=c.id == system.default_campaign,
            offers=[OfferOut(**o.doc()) for o in c.offers],
            default_offer=c.default_offer,
            start=None if c.start is None else format_ts(c.start),
            end=None if c.end is None else format_ts(c.end),
            caps=[cap.doc() for cap in c.caps],
            control_share=c.control_share,
            control=c.control,
            rules=len(c.rules),
            released=st.released,
            canary=st.canary,
            canary_share=st.canary_share if st.canary else None,
            shadows=list(st.shadows),
        )

    @app.get(
        "/v1/campaigns", response_model=CampaignsOut, tags=["campaigns"], responses=errors(503)
    )
    async def list_campaigns() -> CampaignsOut:
        """Every loaded campaign with its offers and what serves it now."""
        return await pools.run(
            "read", lambda: CampaignsOut(campaigns=[campaign_out(c) for c in system.campaigns])
        )

    @app.get(
        "/v1/campaigns/{campaign_id}",
        response_model=CampaignOut,
        tags=["campaigns"],
        responses=errors(404, 422, 503),
    )
    async def get_campaign(campaign_id: str = Path(min_length=1, max_length=128)) -> CampaignOut:
        """One campaign: its offers (id, bundle, message, price, products, text), its rules
        and what serves it now (released, canary and share, shadows)."""
        return await pools.run("read", campaign_out, campaign_id)

    def model_out(version: str) -> ModelOut:
        m = system.registry.get(version)
        return ModelOut(**model_doc(m, system.deployments.state(m.campaign).mode_of(m.version)))

    def list_models_now(campaign: str | None) -> ModelsOut:
        if campaign is not None:
            system.campaign(campaign)  # 404 for an unknown campaign
        return ModelsOut(models=[model_out(m.version) for m in system.registry.list(campaign)])

    @app.get("/v1/models", response_model=ModelsOut, tags=["models"], responses=errors(404, 503))
    async def list_models(campaign: str | None = None) -> ModelsOut:
        """Every registered version (optionally of one campaign), oldest first."""
        return await pools.run("read", list_models_now, campaign)

    @app.get(
        "/v1/models/{version}",
        response_model=ModelOut,
        tags=["models"],
        responses=errors(404, 422, 503),
    )
    async def get_model(version: str = Path(min_length=1, max_length=128)) -> ModelOut:
        """One version: lineage (data window, rows, features hash, code), parameters, and
        offline estimates against the release."""
        return await pools.run("read", model_out, version)

    app.include_router(admin_router(system, pools, pipeline))
    app.include_router(monitoring_router(monitor, pools))

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JSONResponse:
        """Whether this process serves, and the state of each dependency, from memory (no
        store is asked: a stalled store cannot stall the health check). 200 while
        decisions are answered, even from fallbacks; ``status`` says ``degraded`` then."""
        return JSONResponse(system.health())

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        if system.decider.background:
            _deployment_gauge(system)  # from the state decisions use: no store asked
        else:
            await pools.run("read", _deployment_gauge, system)
        return Response(system.metrics.render(), media_type="text/plain; version=0.0.4")

    return app


_SAFE = re.compile(r"^[\w.\-:]+$")


def _deployment_gauge(system: Offerloop) -> None:
    gauge = system.metrics.released_info
    gauge.clear()
    for c in system.campaigns.values():
        live = system.decider.cached(c.id) if system.decider.background else None
        if live is not None:
            released = live.released[0] if live.released else ""
            shadows = [v for v, _ in live.shadows]
            canary, share = (live.canary[0], live.canary[2]) if live.canary else ("", 0.0)
        else:
            st = system.deployments.state(c.id)
            released, shadows = st.released or "", list(st.shadows)
            canary, share = st.canary or "", st.canary_share
        if released and _SAFE.match(released):
            gauge.labels(c.id, released, "released").set(1)
        for v in shadows:
            gauge.labels(c.id, v, "shadow").set(1)
        if canary:
            gauge.labels(c.id, canary, "canary").set(share)
