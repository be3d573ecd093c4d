"""The admin HTTP API: deployment transitions behind a bearer token.

Every call needs ``Authorization: Bearer <admin_token>``; the token is compared in constant
time. No header: 401. A wrong token: 403. No token configured: every call is refused (403),
so the admin API is never open by accident. A refused call changes nothing. The decision
and event endpoints do not depend on any of this.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Header, Query, Security
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from offerloop._clock import ManualClock, format_ts, parse_rfc3339
from offerloop._errors import Conflict, Forbidden, InvalidInput, Problem, Unauthenticated
from offerloop._limits import SafeId
from offerloop.registry import transition_doc
from offerloop.serving._api import errors
from offerloop.serving._pools import WorkPools
from offerloop.serving._routing import StrictJSONRoute

if TYPE_CHECKING:
    from offerloop._system import Offerloop

__all__ = ["admin_router"]

# the scheme in the OpenAPI document (auto_error off: ``actor`` answers 401/403 itself, in
# the one error format)
_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="The admin token (setting admin_token, env OFFERLOOP_ADMIN_TOKEN).",
)


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: SafeId = Field(min_length=1, max_length=128)
    reason: str = Field(default="", max_length=1000, pattern=r"^[^\x00]*$")


class ClockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    now: str | None = Field(default=None, max_length=64, description="RFC 3339; forward only.")
    advance_seconds: float | None = Field(default=None, ge=0.0, le=10 * 365 * 86400.0)


class CanaryIn(VersionIn):
    share: float = Field(gt=0.0, lt=1.0, description="Share of players the canary serves.")


class PipelineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    campaign: SafeId | None = Field(default=None, max_length=128)


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    campaign: SafeId | None = Field(default=None, max_length=128)
    reason: str = Field(default="", max_length=1000, pattern=r"^[^\x00]*$")


PipelineRunner = Callable[[str | None], dict[str, Any]]


def admin_router(
    system: Offerloop, pools: WorkPools, pipeline: PipelineRunner | None = None
) -> APIRouter:
    def actor(
        authorization: str | None = Header(default=None),
        x_offerloop_actor: str | None = Header(default=None, max_length=128),
    ) -> str:
        expected = system.settings.admin_token.get_secret_value()
        if not expected:
            raise Forbidden("the admin API is disabled: set admin_token (OFFERLOOP_ADMIN_TOKEN)")
        if not authorization:
            raise Unauthenticated("admin calls need the header Authorization: Bearer <token>")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            raise Forbidden("wrong admin token")
        return f"api:{x_offerloop_actor}" if x_offerloop_actor else "api"

    router = APIRouter(
        prefix="/v1/admin",
        tags=["admin"],
        route_class=StrictJSONRoute,
        responses=errors(401, 403, 404, 409, 422, 503),
        dependencies=[Security(_BEARER)],  # documents the bearer scheme; actor() checks it
    )
    run = pools.run

    def state(campaign: str | None) -> dict[str, Any]:
        st = system.deployments.state(system.campaign(campaign).id)
        return {
            "campaign": st.campaign,
            "released": st.released,
            "canary": st.canary,
            "canary_share": st.canary_share if st.canary else None,
            "shadows": list(st.shadows),
        }

    @router.get("/clock")
    async def clock(who: str = Depends(actor)) -> Any:
        """The service's time, and whether it can be driven (setting ``clock``)."""
        manual = isinstance(system.clock, ManualClock)
        return {"now": format_ts(system.clock.now()), "manual": manual}

    @router.post("/clock")
    async def set_clock(body: ClockIn, who: str = Depends(actor)) -> Any:
        """Move a manual clock forward: to ``now`` or by ``advance_seconds``."""
        if (body.now is None) == (body.advance_seconds is None):
            raise InvalidInput("give exactly one of now and advance_seconds")
        c = system.clock
        if not isinstance(c, ManualClock):
            raise Conflict("the service runs on the system clock; start it with --clock manual")
        if body.now is not None:
            try:
                target = parse_rfc3339(body.now)
            except ValueError as exc:
                raise InvalidInput.of([Problem("now", str(exc))]) from exc
        else:
            target = c.now() + float(body.advance_seconds or 0.0)
        try:
            c.move_to(target)
        except ValueError as exc:
            raise Conflict(str(exc)) from exc
        return {"now": format_ts(c.now()), "manual": True}

    @router.post("/pipeline/run")
    async def pipeline_run(body: PipelineIn, who: str = Depends(actor)) -> Any:
        """Run the pipeline once now, at the service's time (a backtest drives it after
        moving the clock): one controller step, then retraining. Returns the run record."""
        if pipeline is None:
            raise Conflict("this app has no pipeline runner (start it with offerloop serve)")
        runner = pipeline
        return await run("pipeline", lambda: runner(body.campaign))

    @router.get("/deployments")
    async def deployments(campaign: str | None = None, who: str = Depends(actor)) -> Any:
        """The deployment state of a campaign."""
        return await run("read", state, campaign)

    @router.post("/deploy")
    async def deploy(body: VersionIn, who: str = Depends(actor)) -> Any:
        """Deploy a version in shadow."""

        def go() -> Any:
            system.deployments.deploy(body.version, "shadow", actor=who, reason=body.reason)
            return state(system.registry.get(body.version).campaign)

        return await run("write", go)

    @router.post("/canary")
    async def canary(body: CanaryIn, who: str = Depends(actor)) -> Any:
        """Serve a version to a stable share of players."""

        def go() -> Any:
            system.deployments.canary(body.version, body.share, actor=who, reason=body.reason)
            return state(system.registry.get(body.version).campaign)

        return await run("write", go)

    @router.post("/release")
    async def release(body: VersionIn, who: str = Depends(actor)) -> Any:
        """Release a version."""

        def go() -> Any:
            system.deployments.release(body.version, actor=who, reason=body.reason)
            return state(system.registry.get(body.version).campaign)

        return await run("write", go)

    @router.post("/undeploy")
    async def undeploy(body: VersionIn, who: str = Depends(actor)) -> Any:
        """Stop a shadow or a canary."""

        def go() -> Any:
            system.deployments.undeploy(body.version, actor=who, reason=body.reason)
            return state(system.registry.get(body.version).campaign)

        return await run("write", go)

    @router.post("/rollback")
    async def rollback(body: RollbackIn, who: str = Depends(actor)) -> Any:
        """Release again the previous release."""

        def go() -> Any:
            system.deployments.rollback(
                system.campaign(body.campaign).id, actor=who, reason=body.reason
            )
            return state(body.campaign)

        return await run("write", go)

    @router.get("/history")
    async def history(
        campaign: str | None = None,
        at: str | None = Query(default=None, description="RFC 3339: the version live then."),
        who: str = Depends(actor),
    ) -> Any:
        """Every transition, or which version was released at time ``at``."""
        return await run("read", history_now, campaign, at)

    def history_now(campaign: str | None, at: str | None) -> Any:
        c = system.campaign(campaign).id
        if at is not None:
            try:
                ts = parse_rfc3339(at)
            except ValueError as exc:
                raise InvalidInput(f"at: {exc}") from exc
            return {"campaign": c, "at": at, "released": system.deployments.live_at(c, ts)}
        return {
            "campaign": c,
            "transitions": [transition_doc(t) for t in system.deployments.history(c)],
        }

    return router
