"""Serving: the decision path and the HTTP API."""

from offerloop.serving._app import MAX_BODY_BYTES, create_app
from offerloop.serving._decide import Decider, Decision, feature_row, new_decision_id
from offerloop.serving._inprocess import InProcessClient

__all__ = [
    "MAX_BODY_BYTES",
    "Decider",
    "Decision",
    "InProcessClient",
    "create_app",
    "feature_row",
    "new_decision_id",
]
