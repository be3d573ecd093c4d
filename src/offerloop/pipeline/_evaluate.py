"""Offline evaluation (``offerloop evaluate``): what a policy would earn on logged decisions,
native or imported, by every estimator of :mod:`offerloop.training`, alone or paired with a
baseline on the same rows.

A *policy spec* is one of: a registered version (``linear-7``), ``random``, a learner
(``linear``, ``gbt``, ``purchase_gbt``: trained here, in the configured exploration), or a
file (``file:PATH``, CSV or Parquet) of per-decision probabilities in log order: either one
column per offer (the full distribution: every estimator) or a single ``probability``
column (the logged offer's probability: IPS and SNIPS only).

Every row is evaluated, none is thrown away: learners and the judge are **cross-fitted**
over ``folds`` contiguous time blocks (each block scored by models fitted on the other
blocks), so a learner is never judged on rows it was trained on and the judge never
predicts rows it saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from offerloop._errors import InvalidInput
from offerloop._settings import Settings
from offerloop._system import Offerloop
from offerloop.features import Encoder
from offerloop.pipeline._judge import judge_kind
from offerloop.pipeline._learners import LEARNERS, model_for, policy_for
from offerloop.policies import LoggedData, Policy, RandomPolicy, restrict
from offerloop.training import (
    Estimate,
    Evidence,
    build_training_set,
    compare_arrays,
    cross_fit,
    estimate_arrays,
    estimate_target,
    load_log,
    offer_columns,
    read_table,
    reward_bound,
    time_blocks,
)

__all__ = ["OfflineReport", "evaluate_offline"]

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class OfflineReport:
    logs: str
    policy: str
    rows: int
    logged_value: float  # what the logging policy earned per decision
    judge: str
    folds: int
    estimates: dict[str, Estimate]
    baseline: str | None = None
    baseline_estimates: dict[str, Estimate] = field(default_factory=dict)
    difference: Estimate | None = None  # paired doubly robust policy − baseline
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as one JSON document (``offerloop evaluate --json``)."""
        out: dict[str, Any] = {
            "logs": self.logs,
            "policy": self.policy,
            "rows": self.rows,
            "logged_value": self.logged_value,
            "judge": self.judge,
            "folds": self.folds,
            "estimates": {k: e.as_dict() for k, e in self.estimates.items()},
            "notes": self.notes,
        }
        if self.baseline is not None:
            out["baseline"] = self.baseline
            out["baseline_estimates"] = {k: e.as_dict() for k, e in self.baseline_estimates.items()}
            out["difference"] = None if self.difference is None else self.difference.as_dict()
        return out


@dataclass(frozen=True)
class _Log:
    data: LoggedData
    actions: list[str]
    encoder: list[dict[str, Any]]
    prices: list[float]
    reward_max: float | None


def _source(system: Offerloop, logs: str, campaign: str | None) -> _Log:
    if logs == "native":
        c = system.campaign(campaign)
        data = build_training_set(system.backend, c.id, system.clock.now(), system.attribution).data
        prices = [o.price for o in c.offers]
        top = reward_bound(prices, system.settings)
        return _Log(data, c.offer_ids, Encoder.of(system.features).spec(), prices, top)
    log = load_log(system.settings.data_dir, logs)
    return _Log(log.data, log.actions, log.encoder.spec(), [], None)


def _act(model: Any, part: LoggedData) -> Floats:
    out: Floats = model.act_eligible(part.features)
    return out


def _q(model: Any, part: LoggedData) -> Floats:
    out: Floats = model.predict_batch(part.features)
    return out


def _file_probabilities(path: Path, log: _Log) -> tuple[Floats | None, Floats | None]:
    """(full distributions n × K, or None; the logged offer's probability, or None)."""
    table = read_table(path)
    n = len(log.data)
    have = list(table)
    if all(a in table for a in log.actions):
        probs = np.column_stack([np.asarray(table[a], dtype=np.float64) for a in log.actions])
        if len(probs) != n:
            raise InvalidInput(f"{path}: {len(probs)} rows, the log has {n} decisions")
        # restricted to each logged row's eligible offers, like every policy evaluated here
        return restrict(probs, log.data.features, log.actions), None
    if "probability" in table:
        target = np.asarray(table["probability"], dtype=np.float64)
        if len(target) != n or not np.all((target >= 0) & (target <= 1)):
            raise InvalidInput(
                f"{path}: needs {n} probabilities in [0, 1], one per decision of the log in "
                f"order; found {len(target)}"
            )
        return None, target
    missing = [a for a in log.actions if a not in table][:5]
    raise InvalidInput(
        f"{path}: needs a 'probability' column or one column per offer (missing e.g. "
        f"{', '.join(missing)}; has {', '.join(have[:5])})"
    )


def _probabilities(
    system: Offerloop,
    spec: str,
    log: _Log,
    blocks: Sequence[NDArray[np.int64]],
    s: Settings,
    notes: list[str],
) -> tuple[Floats | None, Floats | None]:
    if spec.startswith("file:"):
        return _file_probabilities(Path(spec[5:]), log)
    if spec == "random":
        return RandomPolicy(log.actions).act_eligible(log.data.features), None
    if spec in LEARNERS:
        notes.append(
            f"{spec} cross-fitted over {len(blocks)} time blocks in {s.exploration} exploration"
        )
        made = cross_fit(
            lambda: policy_for(spec, log.actions, log.prices, log.encoder, s),
            log.data,
            blocks,
            _act,
        )
        return made[0], None
    policy: Policy = system.registry.load(spec)
    if list(policy.offers) != list(log.actions):
        raise InvalidInput(f"{spec} chooses among other offers than the log")
    return policy.act_eligible(log.data.features), None


def evaluate_offline(
    system: Offerloop,
    logs: str,
    policy: str,
    *,
    baseline: str | None = None,
    judge: str | None = None,
    folds: int = 5,
    campaign: str | None = None,
) -> OfflineReport:
    """Every estimator of ``policy`` (a policy spec, see the module) on ``logs`` ("native" or
    an imported log), paired with ``baseline`` when given."""
    s = system.settings
    if not 2 <= folds <= 20:
        raise InvalidInput("folds must be between 2 and 20")
    log = _source(system, logs, campaign)
    n = len(log.data)
    if n < 2 * folds:
        raise InvalidInput(f"log {logs!r} has {n} decisions: too few to evaluate on")
    judge = judge or judge_kind(bool(log.prices))
    if judge not in LEARNERS:
        raise InvalidInput(f"unknown judge {judge!r} (known: {', '.join(LEARNERS)})")
    blocks = time_blocks(log.data, folds)
    notes: list[str] = []
    logged = offer_columns(log.actions, list(log.data.offers))
    probs, target = _probabilities(system, policy, log, blocks, s, notes)
    base_probs: Floats | None = None
    if baseline is not None:
        base_probs, _ = _probabilities(system, baseline, log, blocks, s, notes)
        if base_probs is None or probs is None:
            raise InvalidInput(
                "a paired comparison needs full distributions (one column per offer) for both"
            )
    q: Floats | None = None
    if probs is not None:
        q = cross_fit(
            lambda: model_for(judge, log.actions, log.prices, log.encoder, s),
            log.data,
            blocks,
            _q,
        )[0]
        notes.append(f"judge {judge} cross-fitted over {folds} time blocks")
    else:
        notes.append("only the logged offer's probability given: IPS and SNIPS only")
    bar = Evidence.of(s)
    d = log.data
    if probs is None:
        assert target is not None
        estimates = estimate_target(target, d.propensities, d.rewards, log.reward_max, bar)
    else:
        estimates = estimate_arrays(
            probs, logged, d.propensities, d.rewards, q, reward_max=log.reward_max, evidence=bar
        )
    base_est: dict[str, Estimate] = {}
    diff = None
    if base_probs is not None and probs is not None and q is not None:
        args = (logged, d.propensities, d.rewards, q)
        base_est = estimate_arrays(base_probs, *args, reward_max=log.reward_max, evidence=bar)
        diff = compare_arrays(probs, base_probs, *args, reward_max=log.reward_max, evidence=bar)
    return OfflineReport(
        logs=logs,
        policy=policy,
        rows=n,
        logged_value=float(d.rewards.mean()),
        judge=judge if q is not None else "-",
        folds=folds,
        estimates=estimates,
        baseline=baseline,
        baseline_estimates=base_est,
        difference=diff,
        notes=notes,
    )
