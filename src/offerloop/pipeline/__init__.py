"""The delivery pipeline: retrain, evaluate, register, shadow, release on evidence."""

from offerloop.pipeline._retrain import RetrainResult, retrain

__all__ = ["RetrainResult", "retrain"]
