"""Evaluate any policy on logged data with every estimator, and print-ready results."""

from __future__ import annotations

from offerloop.policies import LoggedData, Policy, RewardModel
from offerloop.training._ope import Estimate, doubly_robust, ips, snips, target_probabilities

__all__ = ["evaluate_all"]


def evaluate_all(
    policy: Policy, data: LoggedData, judge: RewardModel | None = None
) -> dict[str, Estimate]:
    """IPS, self-normalised IPS and (with a reward model) doubly robust estimates."""
    target = target_probabilities(policy, data)
    out = {
        "ips": ips(target, data.propensities, data.rewards),
        "snips": snips(target, data.propensities, data.rewards),
    }
    if judge is not None:
        out["dr"] = doubly_robust(policy, judge, data)
    return out
