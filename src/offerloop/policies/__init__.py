"""Policies: for a player's features, a probability for every offer (one contract for all)."""

from offerloop.policies._artifact import dump_policy, load_policy, sha256
from offerloop.policies._base import FeatureRow, LoggedData, Policy, RewardModel
from offerloop.policies._explore import EpsilonGreedy
from offerloop.policies._linear import LinearRevenue
from offerloop.policies._simple import RandomPolicy, RulesPolicy

__all__ = [
    "EpsilonGreedy",
    "FeatureRow",
    "LinearRevenue",
    "LoggedData",
    "Policy",
    "RandomPolicy",
    "RewardModel",
    "RulesPolicy",
    "dump_policy",
    "load_policy",
    "sha256",
]
