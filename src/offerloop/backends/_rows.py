"""Records ⇄ SQL rows, shared by the SQL backends (same column order in SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from offerloop.backends._records import (
    DecisionRecord,
    ModelRecord,
    ShadowChoice,
    TransitionRecord,
)

__all__ = [
    "DECISION_COLUMNS",
    "DecisionDecoder",
    "decision_from_row",
    "decision_row",
    "dumps",
    "model_from_row",
    "model_row",
    "transition_row",
]


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)  # built once: hot path


def dumps(obj: Any) -> str:
    return _ENCODER.encode(obj)


DECISION_COLUMNS = (
    "decision_id, ts, player_id, campaign, offer_id, model_version, mode, propensity, "
    "features, context, shadows, backfilled, score_ms, fallback, price"
)


def decision_row(d: DecisionRecord) -> tuple[Any, ...]:
    """The record in ``DECISION_COLUMNS`` order."""
    return (
        d.decision_id,
        d.ts,
        d.player_id,
        d.campaign,
        d.offer_id,
        d.model_version,
        d.mode,
        d.propensity,
        dumps(dict(d.features)),
        dumps(dict(d.context)),
        dumps([s.__dict__ for s in d.shadows]),
        dumps(dict(d.backfilled)),
        d.score_ms,
        d.fallback,
        d.price,
    )


def decision_from_row(r: Sequence[Any]) -> DecisionRecord:
    return DecisionRecord(
        decision_id=r[0],
        ts=r[1],
        player_id=r[2],
        campaign=r[3],
        offer_id=r[4],
        model_version=r[5],
        mode=r[6],
        propensity=r[7],
        features=_object(r[8]),
        context=_object(r[9]),
        shadows=() if r[10] == "[]" else tuple(ShadowChoice(**s) for s in json.loads(r[10])),
        backfilled=_object(r[11]),
        score_ms=r[12],
        fallback=r[13],
        price=r[14] if len(r) > 14 else 0.0,
    )


def _object(text: str) -> Any:
    return {} if text == "{}" else json.loads(text)


class DecisionDecoder:
    """``decision_from_row`` with a memory: a row read again (every pipeline run reads the
    same recent decisions) is decoded once. A decision's row changes only when shadow scores
    or backfilled values are merged into it, so a cached record is reused only when the whole
    row read now equals the row it was decoded from; otherwise it is decoded again. Holds at
    most ``size`` records (cleared when full: the pipeline's working set is far smaller)."""

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._memo: dict[str, tuple[Sequence[Any], DecisionRecord]] = {}

    def __call__(self, r: Sequence[Any]) -> DecisionRecord:
        hit = self._memo.get(r[0])
        if hit is not None and tuple(hit[0]) == tuple(r):
            return hit[1]
        record = decision_from_row(r)
        if len(self._memo) >= self.size:
            self._memo.clear()
        self._memo[r[0]] = (r, record)
        return record


def model_row(m: ModelRecord) -> tuple[Any, ...]:
    return (
        m.version,
        m.campaign,
        m.kind,
        m.created_at,
        m.artifact,
        m.sha256,
        dumps(dict(m.params)),
        dumps(dict(m.lineage)),
        dumps(dict(m.metrics)),
    )


def model_from_row(r: Sequence[Any]) -> ModelRecord:
    return ModelRecord(
        r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), json.loads(r[7]), json.loads(r[8])
    )


def transition_row(t: TransitionRecord) -> tuple[Any, ...]:
    """Columns ts, campaign, action, version, from_mode, to_mode, reason, actor."""
    return (t.ts, t.campaign, t.action, t.version, t.from_mode, t.to_mode, t.reason, t.actor)
