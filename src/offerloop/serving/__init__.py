"""Serving: the decision path and the HTTP API."""

from offerloop.serving._app import MAX_BODY_BYTES, create_app
from offerloop.serving._decide import (
    Decider,
    Decision,
    FeatureSource,
    canary_bucket,
    new_decision_id,
)
from offerloop.serving._inprocess import InProcessClient

__all__ = [
    "MAX_BODY_BYTES",
    "Decider",
    "Decision",
    "FeatureSource",
    "InProcessClient",
    "canary_bucket",
    "create_app",
    "new_decision_id",
]
