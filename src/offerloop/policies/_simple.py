"""Policies that need no training data: uniform random and rules from the campaign file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from offerloop.campaigns import Campaign, Condition, Rule
from offerloop.policies._base import FeatureRow, Floats, Policy

__all__ = ["FixedPolicy", "RandomPolicy", "RulesPolicy"]


class RandomPolicy(Policy):
    """Every offer with the same probability: the exploration that yields the first data."""

    kind = "random"

    def __init__(self, offers: Sequence[str]) -> None:
        super().__init__(offers)
        self._p = np.full(len(self.offers), 1.0 / len(self.offers))

    def act(self, features: FeatureRow) -> Floats:
        return self._p.copy()


class RulesPolicy(Policy):
    """The first rule whose conditions all hold picks the offer; otherwise ``default_offer``.

    With ``explore`` 0 it is deterministic: the chosen offer has probability 1 (so its
    decisions carry no exploration). With ``explore`` e in (0, 1] that share of decisions is
    spread uniformly over every offer (each keeps e / n_offers, the chosen one 1 - e more):
    a day-one policy that earns what the campaign's rules earn and still logs data every
    learner and every off-policy estimate can use.
    """

    kind = "rules"

    def __init__(
        self,
        offers: Sequence[str],
        rules: Sequence[Mapping[str, Any]] = (),
        default_offer: str = "",
        explore: float = 0.0,
    ) -> None:
        super().__init__(offers)
        if not 0.0 <= explore <= 1.0:
            raise ValueError("explore must be between 0 and 1")
        self.explore = float(explore)
        self.rules = [dict(r) for r in rules]
        self.default_offer = default_offer or self.offers[0]
        self._rules = [
            Rule(
                offer=str(r["offer"]),
                when=tuple(Condition(str(c[0]), str(c[1]), c[2]) for c in r.get("when", ())),
            )
            for r in self.rules
        ]
        self._index = {o: i for i, o in enumerate(self.offers)}
        unknown = [r.offer for r in self._rules if r.offer not in self._index]
        if self.default_offer not in self._index:
            unknown.append(self.default_offer)
        if unknown:
            raise ValueError(f"rules name offers not in the campaign: {unknown}")

    @classmethod
    def from_campaign(cls, campaign: Campaign, explore: float = 0.0) -> RulesPolicy:
        """The campaign file's rules and default offer, over its offers."""
        return cls(
            offers=campaign.offer_ids,
            rules=[
                {"offer": r.offer, "when": [[c.feature, c.op, c.value] for c in r.when]}
                for r in campaign.rules
            ],
            default_offer=campaign.default_offer,
            explore=explore,
        )

    def get_params(self) -> dict[str, Any]:
        return {
            "offers": list(self.offers),
            "rules": self.rules,
            "default_offer": self.default_offer,
        } | ({"explore": self.explore} if self.explore else {})

    def choose(self, features: FeatureRow) -> str:
        """The offer of the first rule that matches ``features``, else ``default_offer``."""
        for rule in self._rules:
            if rule.matches(features):
                return rule.offer
        return self.default_offer

    def act(self, features: FeatureRow) -> Floats:
        k = len(self.offers)
        p = np.full(k, self.explore / k)
        p[self._index[self.choose(features)]] += 1.0 - self.explore
        return p


class FixedPolicy(Policy):
    """The same distribution over offers for everyone (e.g. "always the best single offer")."""

    kind = "fixed"

    def __init__(self, offers: Sequence[str], probabilities: Sequence[float]) -> None:
        super().__init__(offers)
        p = np.asarray(probabilities, dtype=np.float64)
        if p.shape != (len(self.offers),) or (p < 0).any() or abs(p.sum() - 1.0) > 1e-9:
            raise ValueError("probabilities must be one non-negative number per offer, sum 1")
        self.probabilities = p.tolist()
        self._p = p

    def get_params(self) -> dict[str, Any]:
        return {"offers": list(self.offers), "probabilities": list(self.probabilities)}

    def act(self, features: FeatureRow) -> Floats:
        return self._p.copy()
