"""Training sets from logged decisions, and off-policy evaluation."""

from offerloop.training._dataset import TrainingSet, build_training_set, split_by_time
from offerloop.training._evaluate import evaluate_all
from offerloop.training._imported import ImportedLog, ImportSpec, import_log, load_log
from offerloop.training._ope import (
    Estimate,
    compare,
    doubly_robust,
    dr_terms,
    evaluate,
    ips,
    snips,
    target_probabilities,
)

__all__ = [
    "Estimate",
    "ImportSpec",
    "ImportedLog",
    "TrainingSet",
    "build_training_set",
    "compare",
    "doubly_robust",
    "dr_terms",
    "evaluate",
    "evaluate_all",
    "import_log",
    "ips",
    "load_log",
    "snips",
    "split_by_time",
    "target_probabilities",
]
