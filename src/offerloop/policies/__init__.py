"""Policies: for a player's features, a probability for every offer (one contract for all)."""

from offerloop.policies._artifact import (
    POLICIES,
    REWARD_MODELS,
    WRAPPERS,
    dump_policy,
    load_policy,
    sha256,
)
from offerloop.policies._base import FeatureRow, LoggedData, Policy, RewardModel
from offerloop.policies._calibration import CalibratedThompson
from offerloop.policies._eligible import ELIGIBLE, restrict, restrict_one
from offerloop.policies._explore import EpsilonGreedy, InverseGap, Softmax
from offerloop.policies._gbt import GBTPurchase, GBTRevenue
from offerloop.policies._linear import LinearRevenue
from offerloop.policies._simple import FixedPolicy, RandomPolicy, RulesPolicy
from offerloop.policies._thompson import BucketBeta, ThompsonSampling

__all__ = [
    "ELIGIBLE",
    "POLICIES",
    "REWARD_MODELS",
    "WRAPPERS",
    "BucketBeta",
    "CalibratedThompson",
    "EpsilonGreedy",
    "FeatureRow",
    "FixedPolicy",
    "GBTPurchase",
    "GBTRevenue",
    "InverseGap",
    "LinearRevenue",
    "LoggedData",
    "Policy",
    "RandomPolicy",
    "RewardModel",
    "RulesPolicy",
    "Softmax",
    "ThompsonSampling",
    "dump_policy",
    "load_policy",
    "restrict",
    "restrict_one",
    "sha256",
]
