"""Decisions: the decision engine (one logged, propensity-scored answer per request) and the
shadow policies that score the same rows after the answer, in a thread or a child process.

Below the façade and the HTTP layer: it is given its collaborators (backend, feature source,
registry, deployments, clock, metrics) and never reaches back up for them."""

from offerloop.decisions._decide import (
    CONTROL,
    Decider,
    Decision,
    FeatureSource,
    canary_bucket,
    control_bucket,
    new_decision_id,
    ordinary,
)
from offerloop.decisions._shadow_worker import WorkerSink
from offerloop.decisions._shadows import ShadowScorer, ShadowSink, score_shadows

__all__ = [
    "CONTROL",
    "Decider",
    "Decision",
    "FeatureSource",
    "ShadowScorer",
    "ShadowSink",
    "WorkerSink",
    "canary_bucket",
    "control_bucket",
    "new_decision_id",
    "ordinary",
    "score_shadows",
]
