"""Events in: validation, idempotent durable ingest (``EventIntake``, the service the façade
wires), and reward attribution."""

from offerloop.events._attribution import ATTRIBUTED, PENDING, AttributionRules, decision_token
from offerloop.events._ingest import Classify, IngestResult, ingest
from offerloop.events._intake import EventIntake, price_shown
from offerloop.events._rewards import Reward, attribute
from offerloop.events._schema import KNOWN_TYPES, EventBatch, EventIn, check_event

__all__ = [
    "ATTRIBUTED",
    "KNOWN_TYPES",
    "PENDING",
    "AttributionRules",
    "Classify",
    "EventBatch",
    "EventIn",
    "EventIntake",
    "IngestResult",
    "Reward",
    "attribute",
    "check_event",
    "decision_token",
    "ingest",
    "price_shown",
]
