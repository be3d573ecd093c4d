"""The learners: a learner's name (``purchase_gbt``, ``purchase_gbt@2d``, ...) to a fresh reward
model and to a policy in the configured exploration. One table for retraining, judging and
``offerloop evaluate``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from offerloop._errors import InvalidInput
from offerloop._settings import Settings, learner_parts, parse_buckets
from offerloop.campaigns import Campaign
from offerloop.features import Encoder
from offerloop.policies import (
    REWARD_MODELS,
    BucketBeta,
    CalibratedThompson,
    EpsilonGreedy,
    InverseGap,
    LinearRevenue,
    RewardModel,
    Softmax,
    ThompsonSampling,
)

__all__ = ["LEARNERS", "make_model", "make_policy", "model_for", "policy_for"]

LEARNERS = tuple(REWARD_MODELS)  # the kinds of reward model a learner can be


def model_for(
    learner: str,
    offers: Sequence[str],
    prices: Sequence[float],
    encoder: Sequence[Mapping[str, Any]],
    s: Settings,
) -> RewardModel:
    """A fresh reward model of ``learner`` over ``offers`` (``prices`` may be empty: rewards
    are then clicks or values per decision, not purchases of a priced offer)."""
    try:
        kind, half_life = learner_parts(learner)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if kind not in REWARD_MODELS:
        raise InvalidInput(f"unknown learner {learner!r} (known: {', '.join(REWARD_MODELS)})")
    params: dict[str, Any] = {"offers": list(offers), "encoder": list(encoder)}
    if half_life:
        params["half_life"] = half_life
    learner = kind
    if learner == LinearRevenue.kind:
        params["alpha"] = s.ridge_alpha
    elif prices:
        params["prices"] = list(prices)
    if learner == BucketBeta.kind:
        params["buckets"] = [[n, list(c)] for n, c in parse_buckets(s.thompson_buckets)]
    try:
        return REWARD_MODELS[learner](**params)
    except ValueError as exc:
        raise InvalidInput(f"learner {learner!r}: {exc}") from None


def policy_for(
    learner: str,
    offers: Sequence[str],
    prices: Sequence[float],
    encoder: Sequence[Mapping[str, Any]],
    s: Settings,
) -> EpsilonGreedy:
    """A learner wrapped in the configured exploration (every offer keeps a known floor)."""
    model = model_for(learner, offers, prices, encoder, s)
    if isinstance(model, BucketBeta):  # its own exploration: Thompson sampling
        return ThompsonSampling(list(offers), model, s.exploration_floor)
    if s.exploration == "squarecb":
        return InverseGap(list(offers), model, s.squarecb_gamma_scale, s.exploration_floor)
    if s.exploration == "thompson":
        buckets = [[n, list(c)] for n, c in parse_buckets(s.thompson_buckets)]
        return CalibratedThompson(list(offers), model, buckets, prices, s.exploration_floor)
    if s.exploration == "softmax":
        return Softmax(list(offers), model, s.softmax_temperature, s.epsilon / len(offers))
    return EpsilonGreedy(list(offers), model, epsilon=s.epsilon)


def make_model(learner: str, c: Campaign, encoder: Encoder, s: Settings) -> RewardModel:
    """A fresh reward model of ``learner`` over the campaign's offers and prices."""
    return model_for(learner, c.offer_ids, [o.price for o in c.offers], encoder.spec(), s)


def make_policy(learner: str, c: Campaign, encoder: Encoder, s: Settings) -> EpsilonGreedy:
    """A learner of the campaign's offers in the configured exploration."""
    return policy_for(learner, c.offer_ids, [o.price for o in c.offers], encoder.spec(), s)
