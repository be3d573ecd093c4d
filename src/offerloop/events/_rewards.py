"""Rewards: revenue attributed to a decision within its attribution window.

A purchase event naming a ``decision_id`` counts for that decision if it happens in
``[decision.ts, decision.ts + window]``. The reward is *final* once the window has closed;
until then it is only "so far", and training leaves the decision out (never counts it as 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from offerloop.backends import DecisionRecord, EventLog

__all__ = ["Reward", "attribute"]


@dataclass(frozen=True)
class Reward:
    revenue: float
    purchases: int
    final: bool


def attribute(
    log: EventLog, decisions: Sequence[DecisionRecord], window_seconds: float, now: float
) -> dict[str, Reward]:
    by_id = {d.decision_id: d for d in decisions}
    revenue = dict.fromkeys(by_id, 0.0)
    count = dict.fromkeys(by_id, 0)
    for e in log.purchases_for(list(by_id)):
        d = by_id.get(e.decision_id or "")
        if d is not None and d.ts <= e.ts <= d.ts + window_seconds and e.ts <= now:
            revenue[d.decision_id] += e.amount
            count[d.decision_id] += 1
    return {
        i: Reward(round(revenue[i], 6), count[i], now >= d.ts + window_seconds)
        for i, d in by_id.items()
    }
