"""Rewards: revenue attributed to a decision within its attribution window.

A purchase naming a ``decision_id`` counts for that decision when the attribution rules hold
(``events._attribution``: same player, in ``[decision.ts, decision.ts + window]``, at the
price shown, at most ``max_purchases`` of them). The reward is *final* once the window has
closed; until then it is only "so far", and training leaves the decision out (never counts it
as 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from offerloop.backends import DecisionRecord, EventLog
from offerloop.events._attribution import AttributionRules

__all__ = ["Reward", "attribute"]


@dataclass(frozen=True)
class Reward:
    revenue: float
    purchases: int
    final: bool


def attribute(
    log: EventLog,
    decisions: Sequence[DecisionRecord],
    rules: AttributionRules | float,
    now: float,
) -> dict[str, Reward]:
    """The reward of each decision as of ``now``. ``rules``: the attribution rules, or just
    the window in seconds (then no price check)."""
    if not isinstance(rules, AttributionRules):
        rules = AttributionRules(float(rules), price_tolerance=-1.0, max_purchases=1 << 30)
    window = rules.window_seconds
    by_id = {d.decision_id: d for d in decisions}
    revenue = dict.fromkeys(by_id, 0.0)
    count = dict.fromkeys(by_id, 0)
    for e in log.purchases_for(list(by_id)):  # oldest first: the limit keeps the first
        d = by_id.get(e.decision_id or "")
        if d is not None and count[d.decision_id] < rules.max_purchases and rules.counts(e, d, now):
            revenue[d.decision_id] += e.amount
            count[d.decision_id] += 1
    return {
        i: Reward(round(revenue[i], 6), count[i], now >= d.ts + window) for i, d in by_id.items()
    }
