"""The monitoring HTTP API: the numbers behind each dashboard chart as JSON, and the dashboard.

Their computations (reading logs, re-scoring for calibration) run in the ``slow`` pool
(``serving._pools``): one thread, a few requests in flight at most (more are shed with 503),
never on the event loop that serves decisions, and never more than one at a time competing
with it for the interpreter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from offerloop._clock import parse_time
from offerloop._errors import InvalidInput, Problem
from offerloop._schedule import parse_schedule
from offerloop.monitoring._dashboard import render_dashboard
from offerloop.serving._api import errors
from offerloop.serving._pools import WorkPools
from offerloop.serving._routing import StrictJSONRoute

if TYPE_CHECKING:
    from offerloop.monitoring import Monitor

__all__ = ["monitoring_router"]

_TS = "RFC 3339 time; default: 14 days before `end`."


def _time(name: str, value: str | None) -> float | None:
    """A time query parameter: RFC 3339, or a date (an ``end`` date includes its day)."""
    if value is None:
        return None
    try:
        return parse_time(value, end_of_day=name == "end")
    except ValueError as exc:
        raise InvalidInput.of([Problem(name, f"{exc}, not {value!r}")]) from None


def _bucket(value: str) -> float:
    try:
        sched = parse_schedule(value)
    except InvalidInput:
        sched = None
    seconds = getattr(sched, "seconds", None)
    if seconds is None or seconds < 60:
        raise InvalidInput.of(
            [Problem("bucket", f"must be a duration of at least 1m like 1h or 1d, not {value!r}")]
        )
    return float(seconds)


def monitoring_router(m: Monitor, pools: WorkPools) -> APIRouter:
    router = APIRouter(
        tags=["monitoring"], route_class=StrictJSONRoute, responses=errors(404, 422, 503)
    )
    slow = pools.run
    prefix = "/v1/monitoring"

    @router.get(f"{prefix}/revenue")
    async def revenue(
        campaign: str | None = None,
        start: str | None = Query(default=None, description=_TS),
        end: str | None = Query(default=None, description="RFC 3339 time; default: now."),
        bucket: str = Query(default="1d", description="Bucket width: 1h, 6h, 1d, ..."),
    ) -> Any:
        """Realised revenue per matured decision by version, mode and time bucket, with the
        deployment transitions in the range (releases, canaries, rollbacks)."""
        t0, t1, b = _time("start", start), _time("end", end), _bucket(bucket)
        return await slow("slow", m.revenue, campaign, t0, t1, b)

    @router.get(f"{prefix}/lift")
    async def lift(
        campaign: str | None = None,
        start: str | None = Query(default=None, description=_TS),
        end: str | None = Query(default=None, description="RFC 3339 time; default: now."),
        bucket: str = Query(default="1d", description="Bucket width: 1h, 6h, 1d, ..."),
    ) -> Any:
        """Revenue per decision and per player of the campaign over its control group
        (campaign setting ``control_share``), treated minus control with a 95 % interval,
        overall and per time bucket (matured decisions)."""
        t0, t1, b = _time("start", start), _time("end", end), _bucket(bucket)
        return await slow("slow", m.lift, campaign, t0, t1, b)

    @router.get(f"{prefix}/conversion")
    async def conversion(
        campaign: str | None = None, start: str | None = None, end: str | None = None
    ) -> Any:
        """Conversion and revenue per decision by offer (matured decisions)."""
        return await slow("slow", m.conversion, campaign, _time("start", start), _time("end", end))

    @router.get(f"{prefix}/calibration")
    async def calibration(
        campaign: str | None = None, start: str | None = None, end: str | None = None
    ) -> Any:
        """Predicted vs realised revenue per version (versions with a reward model)."""
        t0, t1 = _time("start", start), _time("end", end)
        return await slow("slow", m.calibration, campaign, t0, t1)

    @router.get(f"{prefix}/shadows")
    async def shadows(
        campaign: str | None = None,
        start: str | None = None,
        end: str | None = None,
        bucket: str = "1d",
    ) -> Any:
        """Off-policy estimates of each shadow on the traffic it scored, per bucket."""
        t0, t1, b = _time("start", start), _time("end", end), _bucket(bucket)
        return await slow("slow", m.shadows, campaign, t0, t1, b)

    @router.get(f"{prefix}/scoring")
    async def scoring(
        campaign: str | None = None,
        start: str | None = None,
        end: str | None = None,
        bucket: str = "1d",
    ) -> Any:
        """Scoring time per decision over time, from the decision log: p50 and p99 of the
        logged ``score_ms`` by version and bucket (matured decisions)."""
        t0, t1, b = _time("start", start), _time("end", end), _bucket(bucket)
        return await slow("slow", m.scoring, campaign, t0, t1, b)

    @router.get(f"{prefix}/drift")
    async def drift(campaign: str | None = None) -> Any:
        """PSI (and Jensen–Shannon for categories) of each feature and of the offer mix,
        live window vs training window, with default-value shares and alert states."""
        return await slow("slow", m.drift, campaign)

    @router.get(f"{prefix}/drift/series")
    async def drift_series(
        campaign: str | None = None,
        start: str | None = None,
        end: str | None = None,
        bucket: str = "1d",
    ) -> Any:
        """Drift over time: PSI per feature of each bucket's decisions against the training
        window of the version released then; thin buckets marked."""
        t0, t1, b = _time("start", start), _time("end", end), _bucket(bucket)
        return await slow("slow", m.drift_series, campaign, t0, t1, b)

    @router.get(f"{prefix}/freshness/series")
    async def freshness_series(
        campaign: str | None = None,
        start: str | None = None,
        end: str | None = None,
        bucket: str = "1d",
    ) -> Any:
        """Freshness over time, from the logs: how late events arrived (p50/p99 by receipt
        time) and the share of decisions that fell back, per bucket."""
        t0, t1, b = _time("start", start), _time("end", end), _bucket(bucket)
        return await slow("slow", m.freshness_series, campaign, t0, t1, b)

    @router.get(f"{prefix}/latency")
    async def latency() -> Any:
        """Decision, feature-lookup and HTTP latency quantiles of this process."""
        return m.latency()

    @router.get(f"{prefix}/freshness")
    async def freshness() -> Any:
        """Quantiles of the age of the newest event behind served features."""
        return m.freshness()

    @router.get(f"{prefix}/runs")
    async def runs(limit: int = Query(default=30, ge=1, le=1000)) -> Any:
        """The latest pipeline runs and what they did."""
        return await slow("read", m.runs, limit)

    @router.get(
        "/dashboard",
        response_class=HTMLResponse,
        tags=["monitoring"],
        responses=errors(404, 422, 503, html=True),
    )
    async def dashboard(
        campaign: str | None = None,
        refresh: int = Query(default=30, ge=0, le=3600, description="Reload every N s; 0: never."),
        start: str | None = Query(
            default=None, description="From this date or RFC 3339 time (default: see end)."
        ),
        end: str | None = Query(
            default=None,
            description="Up to this date (inclusive) or RFC 3339 time; default: now, or the "
            "newest decision when there is none in the 14 days before now.",
        ),
    ) -> HTMLResponse:
        """The dashboard over a time range: server-rendered SVG, no scripts, reloads itself."""
        t0, t1 = _time("start", start), _time("end", end)
        if t0 is not None and t1 is not None and t0 >= t1:
            raise InvalidInput.of([Problem("start", "must be before end")])
        page = await slow("slow", render_dashboard, m, campaign, refresh or None, t0, t1)
        return HTMLResponse(page)

    return router
