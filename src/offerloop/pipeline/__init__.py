"""The delivery pipeline: retrain, evaluate, register, shadow, release on evidence; and the
feature jobs over the decision log (backfill, skew report)."""

from offerloop.pipeline._controller import ControlStep, control
from offerloop.pipeline._features import (
    BackfillResult,
    SkewReport,
    backfill,
    offline_engine,
    skew_report,
)
from offerloop.pipeline._retrain import (
    LEARNERS,
    Candidate,
    RetrainResult,
    make_policy,
    retrain,
)

__all__ = [
    "LEARNERS",
    "BackfillResult",
    "Candidate",
    "ControlStep",
    "RetrainResult",
    "SkewReport",
    "backfill",
    "control",
    "make_policy",
    "offline_engine",
    "retrain",
    "skew_report",
]
