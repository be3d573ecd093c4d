"""Training sets: logged decisions, the features they used, and their final rewards."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offerloop.backends import Backend
from offerloop.events import AttributionRules, attribute
from offerloop.policies import LoggedData

__all__ = ["TrainingSet", "build_training_set", "split_by_time"]


@dataclass(frozen=True)
class TrainingSet:
    data: LoggedData
    decision_ids: list[str]
    start: float
    end: float  # decisions up to here; every one has a closed attribution window
    open_excluded: int  # decisions left out because their window is still open


def build_training_set(
    backend: Backend,
    campaign: str,
    now: float,
    rules: AttributionRules | float,
    start: float = 0.0,
) -> TrainingSet:
    """Decisions in ``[start, now - window)``, with rewards that are final at ``now``.

    Decisions whose window is still open are excluded, never counted as zero reward.
    ``rules``: the attribution rules (``Offerloop.attribution``), or just the window.
    """
    window_seconds = rules.window_seconds if isinstance(rules, AttributionRules) else rules
    end = now - window_seconds
    decisions = backend.decisions(campaign, start, end)
    still_open = len(backend.decisions(campaign, max(start, end), now + 1e-6))
    rewards = attribute(backend, decisions, rules, now)
    assert all(r.final for r in rewards.values())
    data = LoggedData(
        features=[d.training_row for d in decisions],
        offers=[d.offer_id for d in decisions],
        rewards=np.array([rewards[d.decision_id].revenue for d in decisions], dtype=np.float64),
        propensities=np.array([d.propensity for d in decisions], dtype=np.float64),
        ts=np.array([d.ts for d in decisions], dtype=np.float64),
    )
    return TrainingSet(data, [d.decision_id for d in decisions], start, end, still_open)


def split_by_time(data: LoggedData, valid_share: float = 0.25) -> tuple[LoggedData, LoggedData]:
    """Earlier rows train, the latest ``valid_share`` validate (no look-ahead)."""
    order = np.argsort(data.ts, kind="stable")
    cut = round(len(order) * (1.0 - valid_share))
    return data.take(order[:cut]), data.take(order[cut:])
