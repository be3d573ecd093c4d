"""The delivery pipeline: retrain, evaluate, register, shadow, release on evidence; and the
feature jobs over the decision log (backfill, skew report)."""

from offerloop.pipeline._features import (
    BackfillResult,
    SkewReport,
    backfill,
    offline_engine,
    skew_report,
)
from offerloop.pipeline._retrain import RetrainResult, retrain

__all__ = [
    "BackfillResult",
    "RetrainResult",
    "SkewReport",
    "backfill",
    "offline_engine",
    "retrain",
    "skew_report",
]
