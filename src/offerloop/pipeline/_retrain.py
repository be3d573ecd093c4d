"""Retraining: logged decisions → every configured learner → off-policy evaluation against the
release → registry → the gate → the best one in shadow (the controller takes it from there)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from offerloop._errors import Conflict
from offerloop._settings import learner_parts
from offerloop._system import Offerloop
from offerloop.features import Encoder
from offerloop.pipeline._checks import check_model
from offerloop.pipeline._judge import gate, judge_on, training_start, worse
from offerloop.pipeline._learners import LEARNERS, make_policy
from offerloop.pipeline._traffic import share_for
from offerloop.policies import (
    LoggedData,
    Policy,
    RewardModel,
)
from offerloop.registry import SHADOW, code_version
from offerloop.training import (
    Estimate,
    Evidence,
    build_training_set,
    compare,
    reward_bound,
    split_by_time,
    warm_start,
)

__all__ = ["Candidate", "RetrainResult", "retrain"]


@dataclass(frozen=True)
class Candidate:
    version: str
    learner: str
    estimate: Estimate  # doubly robust value per decision on the held-out rows
    uplift: Estimate | None  # paired difference against the release
    problems: tuple[str, ...] = ()  # failed model checks
    loss: float | None = None  # held-out loss of its reward model (compares fits of a kind)


@dataclass(frozen=True)
class RetrainResult:
    campaign: str
    version: str  # the best candidate
    rows: int
    candidate: Estimate
    release_version: str | None
    release: Estimate | None
    uplift: Estimate | None
    reasons: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    # the version this run put in service (the refit of the judged winner with refit_on_all,
    # or the refreshed released learner) and how: "released", "canary", "shadow" or ""
    deployed: str | None = None
    action: str = ""

    @property
    def shadowed(self) -> bool:
        """Whether this run deployed anything (the name predates canaries and refreshes)."""
        return bool(self.action)


def _holdout_loss(policy: Policy, valid: LoggedData) -> float | None:
    """The held-out loss of a learner's reward model (None: it has none, or no rows)."""
    model = getattr(policy, "model", None)
    if not isinstance(model, RewardModel) or not len(valid):
        return None
    return model.loss(valid)


def retrain(
    system: Offerloop,
    campaign: str | None = None,
    *,
    actor: str = "retrain",
    learners: Sequence[str] | None = None,
    run: str = "",
    now: float | None = None,
    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
) -> RetrainResult:
    """Train every configured learner on the decisions whose reward is final at ``now``.

    The newest quarter of the data (by time) is held out. Each candidate and the current
    release are evaluated on it with the doubly robust estimator, all with the same reward
    model (a purchase-probability × price model fitted on the older rows), and so is each
    candidate's paired difference against the release. Every candidate is registered with its
    lineage, estimates and verdict. The gate: the best candidate that passes its model checks
    goes to shadow only if the one-sided ``gate_confidence`` lower bound of its uplift over
    the release exceeds ``gate_margin``. Older learned shadows beyond ``max_learned_shadows``
    make way. Releases are the controller's job, on live evidence.

    With ``run`` (a pipeline run id) retraining is idempotent: a learner already registered
    by that run is loaded instead of trained again, so a resumed run adds no duplicates.
    ``on_stage`` is told when each stage is done (for the run record).
    """
    c = system.campaign(campaign)
    s = system.settings
    learners = list(learners or s.learners)
    now = system.clock.now() if now is None else now
    stage = on_stage or (lambda _name, _doc: None)
    start = training_start(s, system.backend, c.id, now - system.window_seconds)
    ts = build_training_set(system.backend, c.id, now, system.attribution, start=start)
    warm, warm_notes = warm_start(s.data_dir, s.warm_start_logs, c.offer_ids, system.features.names)
    data = ts.data if warm is None else LoggedData.concat([warm, ts.data])
    n = len(data)
    if n < s.min_training_decisions:
        raise Conflict(
            f"only {n} decisions of {c.id!r} have a final reward "
            f"({ts.open_excluded} still open); retraining needs {s.min_training_decisions}"
        )
    train, valid = split_by_time(data)
    stage("data", {"start": ts.start, "end": ts.end, "rows": n, "open": ts.open_excluded})
    encoder = Encoder.of(system.features)
    state = system.deployments.state(c.id)
    release: Policy | None = system.registry.load(state.released) if state.released else None
    lineage = {
        "campaign": c.id,
        "data_start": ts.start,
        "data_end": ts.end,
        "rows": n,
        "train_rows": len(train),
        "valid_rows": len(valid),
        "open_excluded": ts.open_excluded,
        "warm_start": warm_notes,
        "features": encoder.feature_names,
        "features_sha256": system.features.digest(),
        "code_version": code_version(),
        "trained_at": now,
        "run": run,
    }
    ours = [m for m in system.registry.list(c.id) if run and m.lineage.get("run") == run]
    done = {str(m.lineage.get("learner")): m for m in ours if not m.lineage.get("refit_of")}
    refits = {str(m.lineage["refit_of"]): m.version for m in ours if m.lineage.get("refit_of")}
    policies: list[tuple[str, Policy]] = []
    for learner in learners:
        if learner in done:
            policies.append((learner, system.registry.load(done[learner].version)))
        else:
            policies.append((learner, make_policy(learner, c, encoder, s).fit(train)))
    judge = judge_on(c, encoder, s, train, policies)
    top, bar = reward_bound([o.price for o in c.offers], s), Evidence.of(s)
    trained = []
    losses: list[float | None] = []
    for learner, policy in policies:
        if release is not None:
            est, rel, diff = compare(policy, release, judge, valid, top, bar)
        else:
            est, rel, diff = compare(policy, policy, judge, valid, top, bar)[0], None, None
        loss = _holdout_loss(policy, valid)  # before the checks: the same rows just scored
        problems = check_model(policy, valid.features, system.features, s.scoring_budget_ms)
        trained.append((learner, policy, est, rel, diff, problems))
        losses.append(loss)
    passing = [i for i, t in enumerate(trained) if not t[5]]
    best = max(passing, key=lambda i: trained[i][2].value) if passing else -1
    verdict_of_best = gate(trained[best][4] if best >= 0 else None, s)
    gate_low, thin = verdict_of_best.lower, verdict_of_best.thin
    gated = best >= 0 and verdict_of_best.passed
    candidates: list[Candidate] = []
    for i, (learner, policy, est, rel, diff, problems) in enumerate(trained):
        if problems:
            verdict = "rejected: " + "; ".join(problems)
        elif i != best:
            verdict = "passed checks, not the best"
        elif gated:
            verdict = "best candidate, passed the gate"
        elif thin and diff is not None:
            verdict = (
                "best candidate, not gated: evidence too thin (" + "; ".join(diff.warnings) + ")"
            )
        else:
            verdict = (
                f"best candidate, failed the gate: uplift lower bound {gate_low:+.4f} "
                f"<= margin {s.gate_margin:g}"
            )
        metrics: dict[str, object] = {
            "ope_dr": est.as_dict(),
            "holdout_loss": losses[i],
            "evaluated_with": f"doubly robust, judge {judge.kind} fitted on train rows",
            "verdict": verdict,
            "checks": problems or ["passed"],
        }
        if rel is not None and diff is not None:
            metrics.update(
                release_version=state.released, release_dr=rel.as_dict(), uplift_dr=diff.as_dict()
            )
        if learner in done:
            record = done[learner]
        else:
            record = system.registry.register(
                c.id, policy, {**lineage, "learner": learner}, metrics
            )
        candidates.append(Candidate(record.version, learner, est, diff, tuple(problems), losses[i]))
    stage("candidates", {"versions": [x.version for x in candidates]})
    if best < 0:
        raise Conflict(
            "every candidate failed its model checks: "
            + "; ".join(f"{t[0]}: {', '.join(t[5])}" for t in trained)
        )
    winner = candidates[best]
    conf = f"one-sided {s.gate_confidence:.0%}"
    diff = winner.uplift
    if diff is None:
        reason = "no release to compare with"
    elif thin:
        reason = (
            f"uplift over {state.released} {diff.value:+.4f} per decision, not decided on: "
            "evidence too thin (" + "; ".join(diff.warnings) + ")"
        )
    else:
        reason = (
            f"uplift over {state.released} {diff.value:+.4f} per decision, {conf} lower bound "
            f"{gate_low:+.4f} {'>' if gated else '<='} margin {s.gate_margin:g}"
        )

    def served_fit(i: int) -> str:
        """The version to deploy for candidate ``i``: judged as fitted on the older rows,
        it serves as fitted on all of them (``refit_on_all``)."""
        judged = candidates[i].version
        if judged in refits:  # a resumed run: refitted before
            return refits[judged]
        if not (s.refit_on_all and len(valid)):
            return judged
        refit = trained[i][1].clone().fit(data)
        return system.registry.register(
            c.id,
            refit,
            {**lineage, "learner": candidates[i].learner, "train_rows": n, "refit_of": judged},
            {"verdict": f"refit on all {n} rows of {judged}, which was judged"},
        ).version

    def undeployed(i: int) -> bool:
        v = candidates[i].version
        return state.mode_of(v) == "" and state.mode_of(refits.get(v, v)) == ""

    deployed: str | None = None
    # a refresh: the released learner, fitted on more and newer data, replaces its older fit
    # at once unless the newest rows say it is worse (the fresh-release watch still guards
    # it): continuous training of a learner already trusted in production. Fits of the same
    # kind with other recency half-lives (purchase_gbt, purchase_gbt@2d, ...) compete inside
    # the refresh on the held-out loss of their reward models: how much the past still
    # counts is chosen by the newest rows, run by run
    released_learner = (
        system.registry.get(state.released).lineage.get("learner") if state.released else None
    )
    family = learner_parts(str(released_learner))[0] if released_learner else None

    kin = [
        i
        for i, cand in enumerate(candidates)
        if family is not None
        and learner_parts(cand.learner)[0] == family
        and not cand.problems
        and cand.uplift is not None
        and not worse(cand.uplift, s)
    ]
    fresh = min(
        kin,
        key=lambda i: (
            math.inf if candidates[i].loss is None else candidates[i].loss,
            candidates[i].learner != released_learner,
        ),
        default=-1,
    )
    action = ""
    notes: list[str] = []
    if fresh >= 0 and undeployed(fresh):
        up = candidates[fresh].uplift
        assert up is not None
        served = served_fit(fresh)
        why = f"refresh of {released_learner}: uplift over {state.released} {up.value:+.4f}"
        if len(kin) > 1:
            why += f"; {candidates[fresh].learner} fits the newest rows best (held-out loss " + (
                ", ".join(f"{candidates[i].learner} {candidates[i].loss:.5f}" for i in kin) + ")"
            )
        system.deployments.release(served, actor=actor, reason=why)
        action, deployed = "released", served
        notes.append(f"{served} released ({why})")
    positive_but_thin = thin and diff is not None and diff.value > 0
    # the release is the day-one policy: the first learned model takes over at once unless
    # the newest rows say it is worse
    takeover = (
        released_learner is None
        and s.handover == "release"
        and not (diff is not None and worse(diff, s))
    )
    if (
        best != fresh
        and best not in kin
        and undeployed(best)
        and (gated or positive_but_thin or takeover)
    ):
        served = served_fit(best)
        deployed = deployed or served
        # the first learned model (the release is random or rules) reaches a small canary
        # even on thin evidence: the canary's guards judge it on players from then on
        first = released_learner is None and positive_but_thin
        if takeover and not action:  # the fresh-release watch guards it
            why = f"first learned model replaces the day-one policy: {reason}"
            system.deployments.release(served, actor=actor, reason=why)
            notes.append(f"{served} released: first learned model replaces the day-one policy")
            action = "released"
        elif (gated or first) and not state.canary and not action:
            assert diff is not None
            share = share_for(diff, s) if gated else s.canary_share
            why = "passed the gate" if gated else "first learned model, thin positive evidence"
            system.deployments.canary(served, share, actor=actor, reason=f"{why}: {reason}")
            notes.append(f"{served} canary at {share:.0%}")
            action = "canary"
        else:
            why = (
                "passed the gate" if gated else "evidence too thin, positive: gathers live evidence"
            )
            system.deployments.deploy(served, SHADOW, actor=actor, reason=f"{why}: {reason}")
            notes.append(f"{served} to shadow")
            action = action or "shadow"
            # keep the oldest learned shadows (they have gathered the most evidence); the
            # newest slot takes each new candidate
            learned = [
                v
                for v in system.deployments.state(c.id).shadows
                if system.registry.get(v).kind in LEARNERS and v != served
            ]
            keep = max(0, s.max_learned_shadows - 1)
            for old in learned[keep:]:
                system.deployments.undeploy(
                    old,
                    actor=actor,
                    reason=f"newest shadow slot: {served} replaces it",
                    action="retire",
                )
    if notes:
        reason = f"{reason}; " + "; ".join(notes)
    stage("gate", {"winner": winner.version, "shadowed": bool(action), "reason": reason})
    return RetrainResult(
        campaign=c.id,
        version=winner.version,
        rows=n,
        candidate=winner.estimate,
        release_version=state.released,
        release=trained[best][3],
        uplift=diff,
        reasons=[reason],
        candidates=candidates,
        deployed=deployed,
        action=action,
    )
