"""Feature jobs over the decision log: backfill new features, and report training/serving skew."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offerloop._system import Offerloop
from offerloop.backends import DecisionRecord
from offerloop.features import Feature, OfflineEngine, QueryRows, Sql

__all__ = ["BackfillResult", "SkewReport", "backfill", "offline_engine", "skew_report"]


def offline_engine(system: Offerloop) -> OfflineEngine:
    """A DuckDB engine reading this system's events: the columnar store brought up to date
    (``offline_store`` columnar), or the event log itself."""
    engine = OfflineEngine(system.features)
    engine.use_batches(system.player_features.batch_sources.sources)
    b = system.backend
    store = system.columnar()
    if store is not None:
        system.sync_columnar()
        engine.use_columnar(store)
    elif b.name == "postgres":
        engine.use_postgres(getattr(b, "url"), getattr(b, "schema"))  # noqa: B009
    elif (path := getattr(b, "path", None)) is not None:
        engine.use_sqlite(path)
    else:
        engine.use_records(list(b.iter_events()))
    return engine


def _decisions(
    system: Offerloop, campaign: str | None, start: float, end: float
) -> list[DecisionRecord]:
    ids = [campaign] if campaign else list(system.campaigns)
    out: list[DecisionRecord] = []
    for c in ids:
        out.extend(system.backend.decisions(system.campaign(c).id, start, end))
    return out


def _compute(system: Offerloop, decisions: Sequence[DecisionRecord]) -> list[dict[str, Any]]:
    engine = offline_engine(system)
    try:
        cols = engine.compute(
            QueryRows(
                [d.player_id for d in decisions],
                np.array([d.ts for d in decisions], dtype=np.float64),
                [d.context for d in decisions],
            )
        )
        return engine.rows(cols)
    finally:
        engine.close()


@dataclass(frozen=True)
class BackfillResult:
    decisions: int
    updated: int
    features: list[str]
    warnings: list[str] = field(default_factory=list)


def backfill(
    system: Offerloop,
    campaign: str | None = None,
    start: float = 0.0,
    end: float = math.inf,
    names: Sequence[str] = (),
) -> BackfillResult:
    """Compute, point-in-time, the features a decision did not log (added after it was made).

    Logged values are never changed. SQL-source features have no history: backfilling them
    would copy today's value into the past, so they are skipped with a warning; a context
    feature's value is only in the request, so it gets the value of the logged context.
    """
    wanted = [f for f in system.features if not names or f.name in names]
    unknown = sorted(set(names) - {f.name for f in system.features})
    warnings = [f"unknown feature {n!r}: skipped" for n in unknown]
    for f in wanted:
        if isinstance(f, Sql):
            warnings.append(
                f"{f.name}: a SQL source has no history; backfilling would leak the present "
                "into the past, so it was skipped"
            )
    wanted = [f for f in wanted if not isinstance(f, Sql)]
    decisions = [
        d
        for d in _decisions(system, campaign, start, end)
        if any(f.name not in d.features and f.name not in d.backfilled for f in wanted)
    ]
    if not decisions:
        return BackfillResult(0, 0, [f.name for f in wanted], warnings)
    rows = _compute(system, decisions)
    values = {
        d.decision_id: {
            f.name: row[f.name]
            for f in wanted
            if f.name not in d.features and f.name not in d.backfilled
        }
        for d, row in zip(decisions, rows, strict=True)
    }
    updated = system.backend.add_backfill(values)
    return BackfillResult(len(decisions), updated, [f.name for f in wanted], warnings)


DEFAULTED = "features: defaults"  # the decision path's note when the online store failed


@dataclass(frozen=True)
class SkewReport:
    decisions: int
    compared: dict[str, int]  # feature → decisions where both values exist
    mismatches: dict[str, list[tuple[str, Any, Any]]]  # feature → (decision, served, offline)
    # decisions served on default features because the online store was unavailable (their
    # record says so): known defaults, not skew, so not compared
    defaulted: int = 0

    @property
    def ok(self) -> bool:
        """No feature differs between what was served and what the offline engine computes."""
        return not any(self.mismatches.values())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
        )
    return bool(a == b)


def skew_report(
    system: Offerloop, campaign: str | None = None, start: float = 0.0, end: float = math.inf
) -> SkewReport:
    """Recompute offline the features each decision logged, and list every disagreement.

    Features that cannot be recomputed (SQL sources, not point-in-time) are not compared,
    nor are decisions whose record says they were served on default features (the online
    store was unavailable): those are counted in ``defaulted``.
    """
    decisions = _decisions(system, campaign, start, end)
    defaulted = sum(1 for d in decisions if DEFAULTED in d.fallback)
    decisions = [d for d in decisions if DEFAULTED not in d.fallback]
    comparable: list[Feature] = [f for f in system.features if not isinstance(f, Sql)]
    compared = {f.name: 0 for f in comparable}
    mismatches: dict[str, list[tuple[str, Any, Any]]] = {f.name: [] for f in comparable}
    if decisions:
        for d, row in zip(decisions, _compute(system, decisions), strict=True):
            for f in comparable:
                if f.name not in d.features:
                    continue
                compared[f.name] += 1
                if not _same(d.features[f.name], row[f.name]):
                    mismatches[f.name].append((d.decision_id, d.features[f.name], row[f.name]))
    return SkewReport(len(decisions), compared, mismatches, defaulted)
