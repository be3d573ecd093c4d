"""Events in: validation, idempotent durable ingest, and reward attribution."""

from offerloop.events._ingest import IngestResult, ingest
from offerloop.events._rewards import Reward, attribute
from offerloop.events._schema import KNOWN_TYPES, EventBatch, EventIn, check_event

__all__ = [
    "KNOWN_TYPES",
    "EventBatch",
    "EventIn",
    "IngestResult",
    "Reward",
    "attribute",
    "check_event",
    "ingest",
]
