"""The controller: advances versions through shadow → canary → released on evidence from live
traffic, and rolls a canary back when it earns less.

* **shadow → canary:** the newest learned shadow is judged on the decisions it scored (whose
  rewards have matured): for each, its probability of the offer actually shown is logged, so
  its uplift over the release is an importance-weighted paired difference. After
  ``shadow_min_decisions`` such decisions, a lower bound above zero (two-sided
  ``release_confidence`` interval) makes it the canary for ``canary_share`` of players.
* **canary → rolled back:** canary and release serve comparable players (a stable hash
  splits them) over the same days; once ``canary_min_decisions`` canary decisions have
  matured, a canary whose realised revenue per decision is lower than the release's with
  one-sided ``guard_confidence`` is removed.
* **canary → released:** after ``canary_promote_decisions`` matured canary decisions without
  being worse, it is released.

Every step is a recorded transition with its reason and the actor ``controller``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from offerloop._system import Offerloop
from offerloop.backends import DecisionRecord
from offerloop.events import attribute
from offerloop.pipeline._retrain import LEARNERS

__all__ = ["ControlStep", "control"]


@dataclass(frozen=True)
class ControlStep:
    action: str  # "canary" | "release" | "rollback" | "wait"
    version: str | None
    reason: str


def _matured(
    system: Offerloop, campaign: str, since: float
) -> tuple[list[DecisionRecord], dict[str, float]]:
    now = system.clock.now()
    decisions = system.backend.decisions(campaign, since, now - system.window_seconds)
    rewards = attribute(system.backend, decisions, system.window_seconds, now)
    return decisions, {k: r.revenue for k, r in rewards.items()}


def _since(system: Offerloop, campaign: str, version: str) -> float:
    return next(
        (d.since for d in system.backend.deployments(campaign) if d.version == version), 0.0
    )


def control(system: Offerloop, campaign: str | None = None) -> list[ControlStep]:
    c = system.campaign(campaign)
    s = system.settings
    st = system.deployments.state(c.id)
    steps: list[ControlStep] = []
    if st.canary:
        steps.append(_judge_canary(system, c.id, st.canary, st.released))
    else:
        learned = [v for v in st.shadows if system.registry.get(v).kind in LEARNERS]
        judged = [_judge_shadow(system, c.id, v, st.released) for v in learned if st.released]
        ready = [j for j in judged if j.action == "canary"]
        # the oldest shadow with live evidence of uplift becomes the canary
        steps.extend(ready[:1] if ready else judged[:1])
    for step in steps:
        if step.action == "rollback" and step.version:
            system.undeploy(step.version, actor="controller", reason=step.reason)
        elif step.action == "release" and step.version:
            system.release(step.version, actor="controller", reason=step.reason)
        elif step.action == "canary" and step.version:
            system.canary(step.version, s.canary_share, actor="controller", reason=step.reason)
    return steps


def _judge_shadow(system: Offerloop, campaign: str, version: str, released: str) -> ControlStep:
    s = system.settings
    decisions, rewards = _matured(system, campaign, _since(system, campaign, version))
    rows = [
        (d, sh)
        for d in decisions
        if d.mode == "released" and d.model_version == released
        for sh in d.shadows
        if sh.version == version
    ]
    n = len(rows)
    if n < s.shadow_min_decisions:
        return ControlStep(
            "wait",
            version,
            f"{version} in shadow: {n} of {s.shadow_min_decisions} matured decisions scored",
        )
    w = np.array([sh.logged_offer_probability / d.propensity for d, sh in rows])
    r = np.array([rewards[d.decision_id] for d, _ in rows])
    terms = (w - 1.0) * r  # its value minus the release's, on the same decisions
    mean = float(terms.mean())
    se = float(terms.std(ddof=1)) / math.sqrt(n)
    low = mean - NormalDist().inv_cdf(0.5 + s.release_confidence / 2) * se
    if low > 0:
        return ControlStep(
            "canary",
            version,
            f"live off-policy uplift over {released} "
            f"{mean:+.4f} per decision (lower bound {low:+.4f}) on {n} decisions",
        )
    return ControlStep(
        "wait",
        version,
        f"{version} in shadow: live uplift {mean:+.4f} "
        f"(lower bound {low:+.4f}) on {n} decisions, not yet positive",
    )


def _judge_canary(
    system: Offerloop, campaign: str, canary: str, released: str | None
) -> ControlStep:
    s = system.settings
    decisions, rewards = _matured(system, campaign, _since(system, campaign, canary))
    arm_c = [
        rewards[d.decision_id]
        for d in decisions
        if d.mode == "canary" and d.model_version == canary
    ]
    arm_r = [
        rewards[d.decision_id]
        for d in decisions
        if d.mode == "released" and d.model_version == released
    ]
    n_c, n_r = len(arm_c), len(arm_r)
    if n_c < s.canary_min_decisions or n_r < 2:
        return ControlStep(
            "wait", canary, f"canary {canary}: {n_c} of {s.canary_min_decisions} matured decisions"
        )
    diff = float(np.mean(arm_c) - np.mean(arm_r))
    se = math.sqrt(float(np.var(arm_c, ddof=1)) / n_c + float(np.var(arm_r, ddof=1)) / n_r)
    upper = diff + NormalDist().inv_cdf(s.guard_confidence) * se
    summary = (
        f"realised revenue per decision {np.mean(arm_c):.4f} (canary, {n_c}) vs "
        f"{np.mean(arm_r):.4f} ({released}, {n_r}): {diff:+.4f}, one-sided "
        f"{s.guard_confidence:.0%} upper bound {upper:+.4f}"
    )
    if upper < 0:
        return ControlStep("rollback", canary, f"canary worse: {summary}")
    if n_c >= s.canary_promote_decisions:
        return ControlStep("release", canary, f"canary held: {summary}")
    return ControlStep("wait", canary, f"canary {canary} watching: {summary}")
