"""The controller scores each logged row once per policy across steps, and again when the row
changed (a new record from the backend's decoder)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from offerloop.backends import DecisionRecord
from offerloop.pipeline._controller import _SCORES, _scored


class _Owner:
    """Stands in for a registered policy: counts the rows it is asked to score."""

    def __init__(self) -> None:
        self.scored: list[float] = []

    def score(self, rows: list[dict[str, Any]]) -> np.ndarray:
        self.scored.extend(float(r["level"]) for r in rows)
        return np.array([[r["level"], 2 * r["level"]] for r in rows], dtype=np.float64)


def _d(i: int, level: float) -> DecisionRecord:
    features = {"level": level}
    return DecisionRecord(f"d{i}", float(i), "p", "c", "a:b", "v", "released", 0.5, features)


def test_rows_are_scored_once_and_again_when_they_change() -> None:
    owner = _Owner()
    rows = [_d(i, float(i)) for i in range(4)]
    first = _scored(_SCORES, owner, rows, owner.score)
    assert first.tolist() == [[i, 2 * i] for i in range(4)]
    assert owner.scored == [0.0, 1.0, 2.0, 3.0]
    # the next step: two old rows, one of them changed (a new record), and a new row
    changed = replace(rows[3], features={"level": 30.0})
    later = [rows[2], changed, _d(4, 4.0)]
    second = _scored(_SCORES, owner, later, owner.score)
    assert second.tolist() == [[2, 4], [30, 60], [4, 8]]
    assert owner.scored == [0.0, 1.0, 2.0, 3.0, 30.0, 4.0]
    # the memo keeps only the rows of the latest step
    assert set(_SCORES[owner]) == {"d2", "d3", "d4"}
