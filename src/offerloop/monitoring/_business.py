"""Business metrics with delayed labels, computed from the durable logs for any time range.

Revenue arrives up to an attribution window after a decision, so every number here counts
only decisions whose window has closed at ``now`` ("matured"); a bucket still maturing is
reported with how many of its decisions are still open, never as zero revenue.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from offerloop.backends import Backend, DecisionRecord
from offerloop.events import AttributionRules, attribute
from offerloop.policies import Policy
from offerloop.training import EVIDENCE, Evidence, ips, snips

__all__ = [
    "calibration",
    "conversion_by_offer",
    "lift",
    "matured_rewards",
    "revenue_by_version",
    "shadow_estimates",
]

MAX_CALIBRATION_ROWS = 5000  # per version: predictions are recomputed, so sample evenly


def matured_rewards(
    backend: Backend,
    campaign: str,
    start: float,
    end: float,
    rules: AttributionRules | float,
    now: float,
) -> tuple[list[DecisionRecord], dict[str, float], int]:
    """Decisions in [start, end) whose window closed by ``now``, their revenue, and how many
    in the range are still open. ``rules``: the attribution rules (or just the window)."""
    window = rules.window_seconds if isinstance(rules, AttributionRules) else float(rules)
    cutoff = min(end, now - window)
    decisions = backend.decisions(campaign, start, cutoff) if cutoff > start else []
    still_open = backend.count_decisions(campaign, max(start, cutoff), end) if end > cutoff else 0
    rewards = attribute(backend, decisions, rules, now)
    return decisions, {k: r.revenue for k, r in rewards.items()}, still_open


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    mean = float(np.mean(values))
    se = float(np.std(values, ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return mean, se


def revenue_by_version(
    decisions: Sequence[DecisionRecord], rewards: dict[str, float], bucket_seconds: float
) -> list[dict[str, Any]]:
    """Realised revenue per decision per (version, mode, time bucket), with its standard error."""
    groups: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    for d in decisions:
        bucket = math.floor(d.ts / bucket_seconds) * bucket_seconds
        groups[(d.model_version, d.mode, bucket)].append(rewards[d.decision_id])
    out = []
    for (version, mode, bucket), values in sorted(groups.items(), key=lambda kv: kv[0][2]):
        mean, se = _mean_se(values)
        out.append(
            {
                "version": version,
                "mode": mode,
                "bucket_start": bucket,
                "decisions": len(values),
                "revenue": float(sum(values)),
                "revenue_per_decision": mean,
                "se": se,
            }
        )
    return out


def _ratio(sums: Sequence[float], counts: Sequence[int]) -> tuple[float, float]:
    """Revenue per decision over players (sum of revenue / sum of decisions) and its standard
    error with the players as the independent units (a player's decisions are not independent
    of each other: the same tastes and budget; delta method for a ratio of sums)."""
    n = len(sums)
    total = float(sum(counts))
    if n == 0 or total == 0:
        return 0.0, 0.0
    r = float(sum(sums)) / total
    if n < 2:
        return r, 0.0
    mean_count = total / n
    resid = np.asarray(sums, dtype=np.float64) - r * np.asarray(counts, dtype=np.float64)
    se = math.sqrt(float(np.sum(resid**2)) / (n * (n - 1))) / mean_count
    return r, se


def _difference(
    treated: tuple[float, float], control: tuple[float, float], thin: bool, z: float
) -> dict[str, Any]:
    """Treated minus control (estimates with their standard errors), with a normal interval."""
    (mt, st), (mc, sc) = treated, control
    se = math.hypot(st, sc)
    return {
        "treated": mt,
        "control": mc,
        "lift": mt - mc,
        "se": se,
        "lower": None if thin else mt - mc - z * se,
        "upper": None if thin else mt - mc + z * se,
        "relative": (mt - mc) / mc if mc > 0 else None,
    }


def lift(
    decisions: Sequence[DecisionRecord],
    rewards: dict[str, float],
    control_mode: str,
    bucket_seconds: float,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """What the campaign earns over its control group (decisions of ``control_mode``): revenue
    per decision and per player, treated minus control, with a normal interval at
    ``confidence`` (None while an arm has fewer than two players), overall and per time
    bucket.

    Players are split by a stable hash before anything is decided, so the two arms are
    random samples of the same players, and the difference of their means is an unbiased
    estimate of the lift. The player is the unit of randomisation, so both standard errors
    treat players, not decisions, as independent (a player's decisions share its tastes).
    Per player: the revenue of a player's matured decisions in the range, over the players
    with at least one; this counts what the personalisation earns per player, including its
    effect on how often they are shown something they buy."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)

    def split(rows: Sequence[DecisionRecord]) -> dict[str, Any]:
        revenue: dict[bool, dict[str, float]] = {
            True: defaultdict(float),
            False: defaultdict(float),
        }
        count: dict[bool, dict[str, int]] = {True: defaultdict(int), False: defaultdict(int)}
        for d in rows:
            arm = d.mode == control_mode
            revenue[arm][d.player_id] += rewards[d.decision_id]
            count[arm][d.player_id] += 1
        players = {arm: list(revenue[arm]) for arm in (True, False)}
        thin = len(players[True]) < 2 or len(players[False]) < 2

        def per_decision(arm: bool) -> tuple[float, float]:
            ps = players[arm]
            return _ratio([revenue[arm][p] for p in ps], [count[arm][p] for p in ps])

        return {
            "decisions": {
                "treated": sum(count[False].values()),
                "control": sum(count[True].values()),
            },
            "players": {"treated": len(players[False]), "control": len(players[True])},
            "per_decision": _difference(per_decision(False), per_decision(True), thin, z),
            "per_player": _difference(
                _mean_se(list(revenue[False].values())),
                _mean_se(list(revenue[True].values())),
                thin,
                z,
            ),
        }

    buckets: dict[float, list[DecisionRecord]] = defaultdict(list)
    for d in decisions:
        buckets[math.floor(d.ts / bucket_seconds) * bucket_seconds].append(d)
    return {
        "confidence": confidence,
        "overall": split(decisions),
        "series": [{"bucket_start": b, **split(rows)} for b, rows in sorted(buckets.items())],
    }


def conversion_by_offer(
    decisions: Sequence[DecisionRecord], rewards: dict[str, float]
) -> list[dict[str, Any]]:
    """Per offer shown (by offer id): decisions, purchases (decisions with revenue), conversion
    and revenue per decision. ``rewards`` must hold every decision's revenue."""
    groups: dict[str, list[float]] = defaultdict(list)
    for d in decisions:
        groups[d.offer_id].append(rewards[d.decision_id])
    return [
        {
            "offer": offer,
            "decisions": len(v),
            "purchases": sum(1 for x in v if x > 0),
            "conversion": sum(1 for x in v if x > 0) / len(v),
            "revenue_per_decision": float(np.mean(v)),
        }
        for offer, v in sorted(groups.items())
    ]


def calibration(
    policy: Policy,
    offer_ids: Sequence[str],
    decisions: Sequence[DecisionRecord],
    rewards: dict[str, float],
    bins: int = 5,
) -> dict[str, Any] | None:
    """Predicted vs realised revenue of the offers a version served (None for policies
    without a reward model). Predictions are recomputed from the logged features."""
    model = getattr(policy, "model", None)
    predict = getattr(model, "predict_batch", None)
    if predict is None or not decisions:
        return None
    step = max(1, math.ceil(len(decisions) / MAX_CALIBRATION_ROWS))
    rows = list(decisions[::step])
    index = {o: i for i, o in enumerate(offer_ids)}
    scores = np.asarray(predict([d.training_row for d in rows]), dtype=np.float64)
    predicted = np.array([scores[i, index[d.offer_id]] for i, d in enumerate(rows)])
    realised = np.array([rewards[d.decision_id] for d in rows])
    order = np.argsort(predicted, kind="stable")
    groups = [g for g in np.array_split(order, bins) if len(g)]
    return {
        "decisions": len(rows),
        "predicted_per_decision": float(predicted.mean()),
        "realised_per_decision": float(realised.mean()),
        "ratio": float(realised.mean() / predicted.mean()) if predicted.mean() > 0 else None,
        "bins": [
            {
                "predicted": float(predicted[g].mean()),
                "realised": float(realised[g].mean()),
                "decisions": len(g),
            }
            for g in groups
        ],
    }


def shadow_estimates(
    decisions: Sequence[DecisionRecord],
    rewards: dict[str, float],
    bucket_seconds: float,
    reward_max: float | None = None,
    evidence: Evidence = EVIDENCE,
) -> list[dict[str, Any]]:
    """Per shadow version and time bucket: its off-policy value on the decisions it scored
    (self-normalised and plain IPS, by :mod:`offerloop.training`, with the same rare-event
    intervals and thin-evidence warnings as the gate), beside the realised revenue of what
    served those decisions."""
    groups: dict[tuple[str, float], list[tuple[float, float, float]]] = defaultdict(list)
    for d in decisions:
        bucket = math.floor(d.ts / bucket_seconds) * bucket_seconds
        reward = rewards[d.decision_id]
        for sh in d.shadows:
            groups[(sh.version, bucket)].append((sh.logged_offer_probability, d.propensity, reward))
    out = []
    for (version, bucket), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        target, prop, r = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
        sn = snips(target, prop, r, reward_max, evidence)
        plain = ips(target, prop, r, reward_max, evidence)
        out.append(
            {
                "version": version,
                "bucket_start": bucket,
                "decisions": len(rows),
                "snips_per_decision": sn.value,
                "lower": sn.lower,
                "upper": sn.upper,
                "ips_per_decision": plain.value,
                "served_per_decision": float(r.mean()),
                "ess": sn.ess,
                "events": sn.events,
                "usable": sn.usable,
                "warnings": list(sn.warnings),
            }
        )
    return out
