"""Training sets: logged decisions, the features they used, and their final rewards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from offerloop.backends import Backend
from offerloop.events import AttributionRules, attribute
from offerloop.policies import LoggedData

__all__ = ["TrainingSet", "build_training_set", "cross_fit", "split_by_time", "time_blocks"]


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
    still_open = backend.count_decisions(campaign, max(start, end), now + 1e-6)
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


def time_blocks(data: LoggedData, folds: int) -> list[NDArray[np.int64]]:
    """The rows' indices in time order, cut into ``folds`` contiguous blocks."""
    order = np.argsort(data.ts, kind="stable").astype(np.int64)
    return [b for b in np.array_split(order, folds) if len(b)]


def cross_fit(
    make: Callable[[], Any],
    data: LoggedData,
    blocks: Sequence[NDArray[np.int64]],
    predict: Callable[[Any, LoggedData], NDArray[np.float64]],
) -> tuple[NDArray[np.float64], list[Any]]:
    """Out-of-fold predictions: for each block a fresh ``make()`` fitted on the other blocks
    predicts that block (rows × columns, in ``data``'s order); also the fitted models. Every
    row is scored by a model that never saw it."""
    out: NDArray[np.float64] | None = None
    models = []
    everything = np.arange(len(data))
    for block in blocks:
        model = make().fit(data.take(np.setdiff1d(everything, block)))
        values = predict(model, data.take(block))
        if out is None:
            out = np.zeros((len(data), values.shape[1]))
        out[block] = values
        models.append(model)
    assert out is not None, "no blocks"
    return out, models
