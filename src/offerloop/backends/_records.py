"""The rows offerloop stores: plain frozen dataclasses shared by every backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OFFER_OUTCOME",
    "DecisionRecord",
    "DeploymentRecord",
    "EventRecord",
    "ModelRecord",
    "QuarantinedRecord",
    "ShadowChoice",
    "TransitionRecord",
]

JSON = Mapping[str, Any]

# The event type offerloop writes itself for every decision and every attributed purchase
# (``events._offers``), read by offer-history features; never accepted from a client.
OFFER_OUTCOME = "offer_outcome"


@dataclass(frozen=True)
class EventRecord:
    event_id: str
    player_id: str
    type: str
    ts: float
    properties: JSON = field(default_factory=dict)
    received_at: float = 0.0
    # purchases naming a decision: "attributed", "pending" (the decision was not found yet)
    # or why it does not count (events.attribution); "" otherwise
    attribution: str = ""
    seq: int = field(default=0, compare=False)  # the store's sequence number (0: not stored)

    def with_seq(self, seq: int) -> EventRecord:
        """A copy carrying the store's sequence number ``seq`` (built directly: ingest makes
        one per stored event, and ``dataclasses.replace`` costs several times as much)."""
        return EventRecord(
            self.event_id,
            self.player_id,
            self.type,
            self.ts,
            self.properties,
            self.received_at,
            self.attribution,
            seq,
        )

    @property
    def decision_id(self) -> str | None:
        """The decision a purchase names (None for other events, or without a string id)."""
        d = self.properties.get("decision_id") if self.type == "purchase" else None
        return d if isinstance(d, str) else None

    @property
    def amount(self) -> float:
        """A purchase's amount (0.0 for other events, or when it is not a number)."""
        a = self.properties.get("amount", 0.0) if self.type == "purchase" else 0.0
        return float(a) if isinstance(a, int | float) else 0.0


@dataclass(frozen=True)
class ShadowChoice:
    """What a shadow version would have done for a decision."""

    version: str
    offer_id: str
    propensity: float  # its probability of the offer it would have chosen
    logged_offer_probability: float  # its probability of the offer actually shown


@dataclass(frozen=True)
class DecisionRecord:
    decision_id: str
    ts: float
    player_id: str
    campaign: str
    offer_id: str
    model_version: str
    mode: str
    propensity: float
    features: JSON = field(default_factory=dict)
    context: JSON = field(default_factory=dict)
    shadows: tuple[ShadowChoice, ...] = ()
    backfilled: JSON = field(default_factory=dict)  # features added later, computed offline
    score_ms: float = 0.0  # CPU time the serving policy took to score this decision
    fallback: str = ""  # every fallback taken for this decision, "; "-separated ("": none)
    price: float = 0.0  # the price of the offer shown, as shown (0: not recorded)

    @property
    def training_row(self) -> dict[str, Any]:
        """The feature row to train on: logged values, plus backfilled ones for features
        that did not exist when the decision was made (logged values always win)."""
        return {**self.backfilled, **self.features}


@dataclass(frozen=True)
class ModelRecord:
    version: str
    campaign: str
    kind: str
    created_at: float
    artifact: str  # name of the artifact blob
    sha256: str
    params: JSON = field(default_factory=dict)
    lineage: JSON = field(default_factory=dict)  # data window, rows, feature names, code version
    metrics: JSON = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentRecord:
    campaign: str
    version: str
    mode: str  # "released" | "canary" | "shadow"
    since: float
    share: float = 0.0  # canary: the share of players it serves


@dataclass(frozen=True)
class TransitionRecord:
    ts: float
    campaign: str
    action: str  # "deploy" | "release" | "canary" | "rollback" | "undeploy" | "retire"
    version: str
    from_mode: str  # "" when the version was not deployed
    to_mode: str  # "" when it leaves deployment
    reason: str
    actor: str


@dataclass(frozen=True)
class QuarantinedRecord:
    """A record a store refused (it can never be stored as it is), kept for an operator."""

    kind: str  # "decision" or "event"
    key: str  # its id
    payload: Any  # the record as JSON-compatible values
    reason: str  # what the store said
    at: float  # when it was quarantined
