"""Request and response bodies of the HTTP API (v1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from offerloop._limits import MAX_ID, SafeId, SafeKey, SafeScalar

__all__ = [
    "ERROR_DESCRIPTIONS",
    "CampaignOut",
    "CampaignsOut",
    "DecideIn",
    "DecideOut",
    "DecisionOut",
    "ErrorOut",
    "FeatureOut",
    "IngestOut",
    "ModelOut",
    "ModelsOut",
    "OfferOut",
    "PlayerFeaturesOut",
    "ShadowOut",
    "decide_body",
    "errors",
]

if TYPE_CHECKING:
    from offerloop.decisions._decide import Decision

_ID = r"^\S(.*\S)?$"
ContextValue = SafeScalar


class ProblemOut(BaseModel):
    """One thing wrong with a request: where (``events[0].ts``, ``start``) and what."""

    location: str = Field(examples=["events[0].ts"])
    message: str = Field(examples=["must be an RFC 3339 timestamp with a time zone"])


class ErrorDetail(BaseModel):
    """The error: a stable ``type`` (``invalid_input``, ``not_found``, ``conflict``,
    ``unauthenticated``, ``forbidden``, ``backend_unavailable``, ``overloaded``, ...), a
    message for people, and each problem with its location (for invalid input)."""

    type: str = Field(examples=["invalid_input"])
    message: str
    problems: list[ProblemOut] = Field(default_factory=list)


class ErrorOut(BaseModel):
    """Every 4xx and 5xx answer has this body (one mapping of errors to HTTP, in
    ``serving._errors``)."""

    error: ErrorDetail


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed JSON",
    401: "No admin token: send Authorization: Bearer <admin_token>",
    403: "Wrong admin token, or the admin API is disabled (no admin_token set)",
    404: "Unknown campaign, decision, version or player route",
    408: "The body arrived too slowly",
    409: "The change conflicts with the deployment state (e.g. releasing a shadow's canary)",
    413: "Body too large",
    422: "Invalid input: the body names each field and problem",
    503: "A backend is unavailable or the service is overloaded; retry after Retry-After",
}


def errors(*codes: int, html: bool = False) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route (OpenAPI ``responses``), each with the
    :class:`ErrorOut` body. ``html``: the route answers HTML, its errors JSON all the same
    (a model would be documented under the route's HTML media type)."""
    if html:
        ref = {"$ref": "#/components/schemas/ErrorOut"}
        return {
            c: {
                "description": ERROR_DESCRIPTIONS[c],
                "content": {"application/json": {"schema": ref}},
            }
            for c in codes
        }
    return {c: {"description": ERROR_DESCRIPTIONS[c], "model": ErrorOut} for c in codes}


class OfferOut(BaseModel):
    """One offer of a campaign: a bundle of products at a price, with a message."""

    offer_id: str = Field(examples=["gems:urgency"])
    bundle_id: str
    message_id: str
    price: float
    products: dict[str, int] = Field(description="What the bundle holds: product → quantity.")
    message: str = Field(description="The message's text, as a decision returns it.")
    eligible: list[str] = Field(
        default_factory=list,
        description="Who may be shown it: conditions on the request's features that must "
        "all hold (its bundle's and its message's); empty: everyone.",
        examples=[["level >= 20"]],
    )


class CampaignOut(BaseModel):
    """A loaded campaign: its offers (bundles × messages), rules and deployments."""

    campaign: str = Field(examples=["spring_sale"])
    name: str
    default: bool = Field(description="Whether requests without a campaign get this one.")
    offers: list[OfferOut]
    default_offer: str = Field(
        description="What a request gets when no offer is eligible or the campaign is not "
        "running (propensity 1)."
    )
    start: str | None = Field(default=None, description="Offers are shown from (RFC 3339).")
    end: str | None = Field(default=None, description="... and until (RFC 3339).")
    control_share: float = Field(
        default=0.0, description="Share of players kept out of personalisation (a stable hash)."
    )
    control: str = Field(default="random", description="What they are shown: random, default.")
    caps: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Frequency caps per player: at most `max` shows of the same `per` (offer, "
        "bundle, message or campaign) within `within_seconds`.",
        examples=[[{"per": "bundle", "max": 1, "within_seconds": 86400.0}]],
    )
    rules: int = Field(description="How many rules the day-one rules policy has.")
    released: str | None
    canary: str | None
    canary_share: float | None
    shadows: list[str]


class CampaignsOut(BaseModel):
    """Every loaded campaign."""

    campaigns: list[CampaignOut]


class DecideIn(BaseModel):
    """The body of ``POST /v1/decide``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"player_id": "p42", "context": {"local_hour": 20}}]},
    )

    player_id: SafeId = Field(min_length=1, max_length=MAX_ID, pattern=_ID)
    campaign: SafeId | None = Field(
        default=None,
        max_length=MAX_ID,
        description="Campaign id; the default campaign when omitted.",
    )
    context: dict[SafeKey, ContextValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Request context (e.g. local_hour), read by context features.",
    )


class DecideOut(BaseModel):
    decision_id: str
    campaign: str
    offer_id: str
    bundle_id: str
    message_id: str
    price: float
    message: str
    model_version: str
    propensity: float
    mode: str
    decision_token: str | None = Field(
        default=None,
        description="With decision_token_secret set: send it back as properties.decision_token "
        "of the purchase, or the purchase does not count for this decision.",
    )


def decide_body(decision: Decision) -> dict[str, Any]:
    """The answer to a decide request, built directly on the hot path: exactly
    :class:`DecideOut`'s fields (a test checks it), without validating it again."""
    r, o = decision.record, decision.offer
    return {
        "decision_id": r.decision_id,
        "campaign": r.campaign,
        "offer_id": o.id,
        "bundle_id": o.bundle.id,
        "message_id": o.message.id,
        "price": float(o.price),
        "message": o.message.text,
        "model_version": r.model_version,
        "propensity": float(r.propensity),
        "mode": r.mode,
        "decision_token": decision.token or None,
    }


class FeatureOut(BaseModel):
    value: float | int | str
    newest_event_ts: str | None = Field(
        description="Event time of the newest event the value reflects (null: none, or not "
        "event-based)."
    )


class PlayerFeaturesOut(BaseModel):
    player_id: str
    as_of: str
    features: dict[str, FeatureOut]


class ModelOut(BaseModel):
    version: str
    campaign: str
    kind: str
    created_at: str
    mode: str = Field(description="released, shadow, or empty when not deployed")
    sha256: str
    params: dict[str, Any]
    lineage: dict[str, Any]
    metrics: dict[str, Any]


class ModelsOut(BaseModel):
    models: list[ModelOut]


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    attribution: dict[str, str] = Field(
        default_factory=dict,
        description="For each new purchase naming a decision_id: attributed, pending (the "
        "decision is not stored yet; checked again when revenue is read) or why it does not "
        "count (unknown_decision, other_player, before_decision, outside_window, "
        "price_mismatch, bad_token, repeat). The purchase is stored either way.",
    )
    stored: str = Field(
        default="database",
        description="database: committed before this answer; journal: the database could not "
        "take them now, so they were written to this process's local journal (on disk before "
        "this answer) and are committed when it can.",
    )
    features: str = Field(
        default="updated",
        description="updated: the players' online features reflect these events; deferred: "
        "the online store is unavailable, they will from the log once it is back.",
    )


class ShadowOut(BaseModel):
    version: str
    offer_id: str
    propensity: float
    logged_offer_probability: float


class DecisionOut(BaseModel):
    decision_id: str
    ts: str
    player_id: str
    campaign: str
    offer_id: str
    model_version: str
    mode: str
    propensity: float
    features: dict[str, Any]
    context: dict[str, Any]
    shadows: list[ShadowOut]
    revenue: float = Field(description="Revenue attributed so far (within the window).")
    purchases: int
    reward_final: bool = Field(description="True once the attribution window has closed.")
    window_closes_at: str
