"""The delivery pipeline: retrain, evaluate, gate, register, shadow; the controller (canary,
release, rollback on evidence); scheduled, resumable runs; and the
feature jobs over the decision log (backfill, skew report)."""

from offerloop.pipeline._controller import ControlStep, control
from offerloop.pipeline._evaluate import OfflineReport, evaluate_offline
from offerloop.pipeline._features import (
    BackfillResult,
    SkewReport,
    backfill,
    offline_engine,
    skew_report,
)
from offerloop.pipeline._judge import JUDGE, judge_kind
from offerloop.pipeline._learners import LEARNERS, make_policy
from offerloop.pipeline._retrain import Candidate, RetrainResult, retrain
from offerloop.pipeline._runs import MAX_ATTEMPTS, list_runs, pipeline_lock, run_pipeline
from offerloop.pipeline._scheduler import PipelineScheduler

__all__ = [
    "JUDGE",
    "LEARNERS",
    "MAX_ATTEMPTS",
    "BackfillResult",
    "Candidate",
    "ControlStep",
    "OfflineReport",
    "PipelineScheduler",
    "RetrainResult",
    "SkewReport",
    "backfill",
    "control",
    "evaluate_offline",
    "judge_kind",
    "list_runs",
    "make_policy",
    "offline_engine",
    "pipeline_lock",
    "retrain",
    "run_pipeline",
    "skew_report",
]
