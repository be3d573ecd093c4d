"""Retraining: logged decisions → every configured learner → off-policy evaluation against the
release → registry → the best one in shadow (→ released on evidence)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from offerloop._errors import Conflict, InvalidInput
from offerloop._settings import Settings
from offerloop._system import Offerloop
from offerloop.campaigns import Campaign
from offerloop.features import Encoder
from offerloop.pipeline._checks import check_model
from offerloop.policies import (
    REWARD_MODELS,
    EpsilonGreedy,
    GBTPurchase,
    LinearRevenue,
    Policy,
    RewardModel,
    Softmax,
)
from offerloop.registry import SHADOW, code_version
from offerloop.training import Estimate, build_training_set, compare, split_by_time

__all__ = ["LEARNERS", "Candidate", "RetrainResult", "make_policy", "retrain"]

LEARNERS = tuple(REWARD_MODELS)


@dataclass(frozen=True)
class Candidate:
    version: str
    learner: str
    estimate: Estimate  # doubly robust value per decision on the held-out rows
    uplift: Estimate | None  # paired difference against the release
    problems: tuple[str, ...] = ()  # failed model checks


@dataclass(frozen=True)
class RetrainResult:
    campaign: str
    version: str  # the best candidate
    rows: int
    candidate: Estimate
    release_version: str | None
    release: Estimate | None
    uplift: Estimate | None
    released: bool
    reasons: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)


def make_model(learner: str, c: Campaign, encoder: Encoder, s: Settings) -> RewardModel:
    if learner not in REWARD_MODELS:
        raise InvalidInput(f"unknown learner {learner!r} (known: {', '.join(REWARD_MODELS)})")
    params: dict[str, Any] = {"offers": c.offer_ids, "encoder": encoder.spec()}
    if learner == LinearRevenue.kind:
        params["alpha"] = s.ridge_alpha
    else:
        params["prices"] = [o.price for o in c.offers]
    return REWARD_MODELS[learner](**params)


def make_policy(learner: str, c: Campaign, encoder: Encoder, s: Settings) -> EpsilonGreedy:
    """A learner wrapped in the configured exploration (every offer keeps a known floor)."""
    model = make_model(learner, c, encoder, s)
    if s.exploration == "softmax":
        return Softmax(c.offer_ids, model, s.softmax_temperature, s.epsilon / len(c.offers))
    return EpsilonGreedy(c.offer_ids, model, epsilon=s.epsilon)


def retrain(
    system: Offerloop,
    campaign: str | None = None,
    *,
    actor: str = "retrain",
    release_if_better: bool = False,
    learners: Sequence[str] | None = None,
) -> RetrainResult:
    """Train every configured learner on the decisions whose reward is final.

    The newest quarter of the data (by time) is held out. Each candidate and the current
    release are evaluated on it with the doubly robust estimator, all with the same reward
    model (a purchase-probability × price model fitted on the older rows), and so is each
    candidate's paired difference against the release. Every candidate is registered with its
    lineage and estimates; the best is deployed in shadow, replacing earlier candidates. With
    ``release_if_better`` it is released when the lower bound of its uplift (two-sided
    ``release_confidence`` interval) exceeds ``release_margin``.
    """
    c = system.campaign(campaign)
    s = system.settings
    learners = list(learners or s.learners)
    now = system.clock.now()
    ts = build_training_set(system.backend, c.id, now, system.window_seconds)
    n = len(ts.data)
    if n < s.min_training_decisions:
        raise Conflict(
            f"only {n} decisions of {c.id!r} have a final reward "
            f"({ts.open_excluded} still open); retraining needs {s.min_training_decisions}"
        )
    train, valid = split_by_time(ts.data)
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
        "features": encoder.feature_names,
        "features_sha256": system.features.digest(),
        "code_version": code_version(),
        "trained_at": now,
    }
    trained: list[
        tuple[str, EpsilonGreedy, Estimate, Estimate | None, Estimate | None, list[str]]
    ] = []
    policies = [(learner, make_policy(learner, c, encoder, s).fit(train)) for learner in learners]
    # the judge is a purchase × price model fitted on the same rows: reuse that candidate's
    # model when there is one (same parameters and seed, so the same fit)
    judge = next(
        (p.model for learner, p in policies if learner == GBTPurchase.kind),
        None,
    ) or make_model(GBTPurchase.kind, c, encoder, s).fit(train)
    for learner, policy in policies:
        if release is not None:
            est, rel, diff = compare(policy, release, judge, valid)
        else:
            est, rel, diff = compare(policy, policy, judge, valid)[0], None, None
        problems = check_model(policy, valid.features, system.features, s.scoring_budget_ms)
        trained.append((learner, policy, est, rel, diff, problems))
    passing = [i for i, t in enumerate(trained) if not t[5]]
    if not passing:
        raise Conflict(
            "every candidate failed its model checks: "
            + "; ".join(f"{t[0]}: {', '.join(t[5])}" for t in trained)
        )
    best = max(passing, key=lambda i: trained[i][2].value)
    candidates: list[Candidate] = []
    records = []
    for i, (learner, policy, est, rel, diff, problems) in enumerate(trained):
        verdict = (
            "rejected: " + "; ".join(problems)
            if problems
            else "best candidate"
            if i == best
            else "passed checks, not the best"
        )
        metrics: dict[str, object] = {
            "ope_dr": est.as_dict(),
            "evaluated_with": f"doubly robust, judge {judge.kind} fitted on train rows",
            "verdict": verdict,
            "checks": problems or ["passed"],
        }
        if rel is not None and diff is not None:
            metrics.update(
                release_version=state.released, release_dr=rel.as_dict(), uplift_dr=diff.as_dict()
            )
        record = system.registry.register(c.id, policy, {**lineage, "learner": learner}, metrics)
        records.append(record)
        candidates.append(Candidate(record.version, learner, est, diff, tuple(problems)))
    winner = candidates[best]
    system.deploy(winner.version, SHADOW, actor=actor, reason="best retrained candidate")
    # keep the newest few learned shadows: each needs a day of scored, matured decisions
    # before the controller can judge it; older ones make way
    learned = [v for v in state.shadows if system.registry.get(v).kind in LEARNERS]
    for old in learned[: max(0, len(learned) - (s.max_learned_shadows - 1))]:
        system.undeploy(old, actor=actor, reason=f"superseded by {winner.version}")
    reasons: list[str] = []
    released = False
    diff = winner.uplift
    conf = f"{s.release_confidence:.0%}"
    if diff is None:
        reasons.append("no release to compare with")
    elif (low := diff.lower_bound(s.release_confidence)) > s.release_margin:
        reasons.append(
            f"uplift over {state.released} {diff.value:+.4f} per decision, {conf} lower bound "
            f"{low:+.4f} > margin {s.release_margin:g}"
        )
        if release_if_better:
            system.release(winner.version, actor=actor, reason=reasons[-1])
            released = True
    else:
        reasons.append(
            f"uplift over {state.released} {diff.value:+.4f} per decision, {conf} lower bound "
            f"{diff.lower_bound(s.release_confidence):+.4f} <= margin {s.release_margin:g}: "
            "kept in shadow"
        )
    return RetrainResult(
        campaign=c.id,
        version=winner.version,
        rows=n,
        candidate=winner.estimate,
        release_version=state.released,
        release=trained[best][3],
        uplift=diff,
        released=released,
        reasons=reasons,
        candidates=candidates,
    )
