"""Day one: what a campaign never deployed serves before any model is learned, so that a
policy with logged propensities serves from the first request.

* ``day_one = thompson`` (and no rules share): Thompson sampling under the uninformative
  prior (each offer's purchase probability uniform on [0, 1]) with ``day_one_explore`` of the
  decisions uniform; the pure rules, if the campaign has any, in shadow.
* ``day_one_rules_share`` > 0 and the campaign has rules: the rules on that share of the
  decisions, the rest uniform; no pure rules in shadow (deterministic, they could be
  released and end exploration).
* otherwise: uniform random, the pure rules in shadow.
"""

from __future__ import annotations

from collections.abc import Iterable

from offerloop._settings import Settings, parse_buckets
from offerloop.campaigns import Campaign
from offerloop.features import Encoder, FeatureSet
from offerloop.policies import BucketBeta, Policy, RandomPolicy, RulesPolicy, ThompsonSampling
from offerloop.registry._deployments import SHADOW, Deployments
from offerloop.registry._registry import Registry

__all__ = ["bootstrap", "prior_thompson"]


def prior_thompson(c: Campaign, features: FeatureSet, s: Settings) -> ThompsonSampling:
    """The thompson learner before any data: every bucket has the prior's probabilities."""
    model = BucketBeta(
        c.offer_ids,
        [o.price for o in c.offers],
        Encoder.of(features).spec(),
        [[n, list(cuts)] for n, cuts in parse_buckets(s.thompson_buckets)],
    )
    return ThompsonSampling(c.offer_ids, model, floor=s.day_one_explore)


def _day_one(c: Campaign, features: FeatureSet, s: Settings) -> tuple[Policy, bool, str]:
    """The policy to release, whether the pure rules run in shadow, and why."""
    share = s.day_one_rules_share
    if share > 0 and c.rules:
        first: Policy = RulesPolicy.from_campaign(c, explore=1.0 - share)
        return first, False, f"day one: the rules on {share:.0%} of decisions, the rest uniform"
    if s.day_one == "thompson":
        reason = (
            "day one: Thompson sampling under the uninformative prior, "
            f"{s.day_one_explore:.0%} uniform"
        )
        return prior_thompson(c, features, s), bool(c.rules), reason
    return RandomPolicy(c.offer_ids), True, "day one: random explores, rules run in shadow"


def bootstrap(
    campaigns: Iterable[Campaign],
    features: FeatureSet,
    s: Settings,
    registry: Registry,
    deployments: Deployments,
    actor: str = "bootstrap",
) -> None:
    """For every campaign never deployed (no transition recorded): register and release
    its day-one policy (see the module doc), the pure rules in shadow where it says so."""
    for c in campaigns:
        if registry.backend.transitions(c.id):
            continue
        first, shadow_rules, reason = _day_one(c, features, s)
        src = {"source": "bootstrap"}
        released = registry.register(c.id, first, src)
        rules = registry.register(c.id, RulesPolicy.from_campaign(c), src) if shadow_rules else None
        deployments.release(released.version, actor=actor, reason=reason)
        if rules is not None:
            deployments.deploy(rules.version, SHADOW, actor=actor, reason=reason)
