"""Judging a policy off-policy, written once: which reward model judges, fitted on which rows,
and the verdicts its estimates support. Used by the retrain gate (held-out rows), the
controller (live rows) and ``offerloop evaluate`` (cross-fitted logged rows).

* **The judge** is a purchase-probability × price model (``purchase_gbt``) when offers have
  prices, a value model (``gbt``) for logs of unpriced rewards (clicks, values). It must never
  have been fitted on the rows it judges: retraining fits it on the training rows and judges
  the held-out ones; the controller uses a registered one whose data ended before the live
  rows start (or fits one on the data before them); ``evaluate`` cross-fits it.
* **Worse:** the newest rows say a policy earns less than the release when the one-sided
  ``gate_confidence`` upper bound of its paired uplift is below zero, on evidence that is
  not too thin.
* **The gate:** a candidate passes when the one-sided ``gate_confidence`` lower bound of its
  uplift exceeds ``gate_margin`` on evidence that is not too thin.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from offerloop._settings import Settings
from offerloop.backends import Backend
from offerloop.campaigns import Campaign
from offerloop.features import Encoder
from offerloop.pipeline._learners import make_model
from offerloop.policies import GBTPurchase, GBTRevenue, LoggedData, Policy, RewardModel
from offerloop.training import Estimate, build_training_set

if TYPE_CHECKING:
    from offerloop._system import Offerloop

__all__ = [
    "JUDGE",
    "VALUE_JUDGE",
    "Gate",
    "gate",
    "judge_kind",
    "judge_on",
    "live_judge",
    "training_start",
    "worse",
]

JUDGE = GBTPurchase.kind  # purchase probability × price
VALUE_JUDGE = GBTRevenue.kind  # rewards that are not purchases of a priced offer


def judge_kind(priced: bool) -> str:
    """The judge's learner for rewards that are purchases of priced offers, or not."""
    return JUDGE if priced else VALUE_JUDGE


def judge_on(
    c: Campaign,
    encoder: Encoder,
    s: Settings,
    rows: LoggedData,
    fitted: Iterable[tuple[str, Policy]] = (),
) -> RewardModel:
    """The judge fitted on ``rows`` (retraining's training rows). A ``purchase_gbt`` candidate
    in ``fitted`` (learner, policy) was fitted on the same rows with the same parameters and
    seed: its model is that fit, reused instead of fitted again."""
    for learner, policy in fitted:
        model = getattr(policy, "model", None)
        if learner == JUDGE and isinstance(model, GBTPurchase):
            return model
    return make_model(JUDGE, c, encoder, s).fit(rows)


def live_judge(system: Offerloop, campaign: str, since: float) -> tuple[RewardModel, float] | None:
    """A judge for live rows from ``since`` on, and the time from which rows are independent
    of its training data: the newest registered ``purchase_gbt`` trained only on data from
    before ``since`` (every live row usable), else the oldest one trained later (rows after
    its data window), else one fitted now on the data before ``since``. None: too few rows
    to fit one (``min_training_decisions``)."""
    models = [m for m in system.registry.list(campaign) if m.kind == JUDGE]
    ends = {m.version: float(m.lineage.get("data_end", m.created_at)) for m in models}
    before = [m for m in models if ends[m.version] <= since]
    pick = (
        max(before, key=lambda m: ends[m.version])
        if before
        else min(models, key=lambda m: ends[m.version], default=None)
    )
    if pick is not None:
        model = getattr(system.registry.load(pick.version), "model", None)
        if isinstance(model, GBTPurchase):
            return model, max(since, ends[pick.version])
    ts = build_training_set(
        system.backend,
        campaign,
        since,
        system.attribution,
        start=training_start(
            system.settings, system.backend, campaign, since - system.window_seconds
        ),
    )
    if len(ts.data) < system.settings.min_training_decisions:
        return None
    c = system.campaign(campaign)
    return make_model(JUDGE, c, Encoder.of(system.features), system.settings).fit(ts.data), since


def training_start(s: Settings, backend: Backend, campaign: str, end: float) -> float:
    """Where training reads from: ``training_window_days`` before the newest decision before
    ``end`` (the end of the decisions with a final reward; so a replay of old traffic, far
    from the clock, reads the same rows), or the start of the log (0)."""
    days = s.training_window_days
    if days <= 0:
        return 0.0
    newest = backend.decisions(campaign, 0.0, end, newest=1)
    return max(0.0, newest[0].ts - days * 86400.0) if newest else 0.0


def worse(uplift: Estimate, s: Settings) -> bool:
    """The rows say it earns less than the release (never on too thin evidence)."""
    return uplift.usable and uplift.upper_bound(s.gate_confidence) < 0


@dataclass(frozen=True)
class Gate:
    """The gate's verdict on a candidate's uplift over the release: ``passed``; ``thin`` (the
    evidence is too thin to decide on either way); ``lower``, the one-sided
    ``gate_confidence`` lower bound (+inf, and passed, with no release to compare with)."""

    passed: bool
    thin: bool
    lower: float


def gate(uplift: Estimate | None, s: Settings) -> Gate:
    """The gate on a candidate's uplift over the release (None: there is no release)."""
    if uplift is None:  # nothing to be worse than
        return Gate(True, False, math.inf)
    lower = uplift.lower_bound(s.gate_confidence)
    thin = not uplift.usable
    return Gate(lower > s.gate_margin and not thin, thin, lower)
