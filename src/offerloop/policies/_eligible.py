"""Eligibility travels with the feature row: a decision that could show only some of the
campaign's offers (eligibility conditions, a schedule; ``campaigns.Campaign.eligible``) logs
them under :data:`ELIGIBLE`, and every policy's probabilities are restricted to them in one
way, here: the policy's own probabilities of the eligible offers, renormalised, or uniform
over them when the policy gives them nothing. The decision path draws from exactly these
probabilities, so the logged propensity is the probability among the eligible offers, and
off-policy evaluation (which restricts a candidate the same way on the same logged row) stays
exact. A row without the key could show every offer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ELIGIBLE", "restrict", "restrict_one"]

ELIGIBLE = "_eligible"  # not a feature name (those are lower_snake_case, no leading "_")

Floats = NDArray[np.float64]
FeatureRow = Mapping[str, Any]


def _listed(eligible: object) -> tuple[str, ...]:
    """The logged eligible offers as a tuple (ValueError when they are not a list)."""
    if not isinstance(eligible, list | tuple):
        raise ValueError(f"{ELIGIBLE} must be a list of offer ids, not {eligible!r}")
    return tuple(eligible)


def restrict_one(p: Floats, row: FeatureRow, offers: Sequence[str]) -> Floats:
    """One row's probabilities restricted to its eligible offers (unchanged without them)."""
    if row.get(ELIGIBLE) is None:
        return p
    out: Floats = restrict(np.asarray(p, dtype=np.float64)[None, :], [row], offers)[0]
    return out


def restrict(probs: Floats, rows: Sequence[FeatureRow], offers: Sequence[str]) -> Floats:
    """:func:`restrict_one` for every row of a batch (shape (len(rows), len(offers))), one
    mask per distinct list of eligible offers."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, r in enumerate(rows):
        eligible = r.get(ELIGIBLE)
        if eligible is not None:
            groups.setdefault(_listed(eligible), []).append(i)
    if not groups:
        return probs
    out = np.array(probs, dtype=np.float64, copy=True)
    for eligible, idx in groups.items():
        allowed = set(eligible)
        mask = np.array([o in allowed for o in offers], dtype=bool)
        if not mask.any():  # none of the logged offers is in this campaign version
            continue
        q = np.where(mask[None, :], out[idx], 0.0)
        total = q.sum(axis=1, keepdims=True)
        uniform = np.broadcast_to(mask / float(mask.sum()), q.shape)
        out[idx] = np.where(total > 0, q / np.where(total > 0, total, 1.0), uniform)
    return out
