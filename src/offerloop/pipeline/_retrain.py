"""Retraining: logged decisions → learned policy → registry → shadow (→ release on evidence)."""

from __future__ import annotations

from dataclasses import dataclass, field

from offerloop import __version__
from offerloop._errors import Conflict
from offerloop._system import Offerloop
from offerloop.features import Encoder
from offerloop.policies import EpsilonGreedy, LinearRevenue
from offerloop.registry import SHADOW
from offerloop.training import Estimate, build_training_set, compare, doubly_robust, split_by_time

__all__ = ["RetrainResult", "retrain"]


@dataclass(frozen=True)
class RetrainResult:
    campaign: str
    version: str
    rows: int
    candidate: Estimate
    release_version: str | None
    release: Estimate | None
    uplift: Estimate | None
    released: bool
    reasons: list[str] = field(default_factory=list)


def retrain(
    system: Offerloop,
    campaign: str | None = None,
    *,
    actor: str = "retrain",
    release_if_better: bool = False,
) -> RetrainResult:
    """Train the linear policy on every decision whose reward is final.

    The newest quarter of the data (by time) is held out; the candidate and the current
    release are both evaluated on it with the doubly robust estimator (the candidate's reward
    model, fitted on the older rows, as the direct-method part), and so is their paired
    difference. The candidate is registered with its lineage and estimates and deployed in
    shadow. With ``release_if_better`` it is released when the lower bound of its uplift over
    the release (two-sided ``release_confidence`` interval) exceeds ``release_margin``.
    """
    c = system.campaign(campaign)
    s = system.settings
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
    model = LinearRevenue(c.offer_ids, alpha=s.ridge_alpha, encoder=encoder.spec())
    policy = EpsilonGreedy(c.offer_ids, model, epsilon=s.epsilon).fit(train)
    state = system.deployments.state(c.id)
    rel: Estimate | None = None
    diff: Estimate | None = None
    if state.released:
        cand, rel, diff = compare(policy, system.registry.load(state.released), policy.model, valid)
    else:
        cand = doubly_robust(policy, policy.model, valid)
    lineage = {
        "campaign": c.id,
        "data_start": ts.start,
        "data_end": ts.end,
        "rows": n,
        "train_rows": len(train),
        "valid_rows": len(valid),
        "open_excluded": ts.open_excluded,
        "features": encoder.feature_names,
        "encoded_features": encoder.names,
        "code_version": __version__,
        "trained_at": now,
    }
    metrics: dict[str, object] = {"ope_dr": cand.as_dict()}
    if rel is not None and diff is not None:
        metrics.update(
            release_version=state.released, release_dr=rel.as_dict(), uplift_dr=diff.as_dict()
        )
    record = system.registry.register(c.id, policy, lineage, metrics)
    system.deploy(record.version, SHADOW, actor=actor, reason="retrained; scoring in shadow")
    for old in state.shadows:  # the newest candidate of a learner replaces older ones
        if system.registry.get(old).kind == record.kind:
            system.undeploy(old, actor=actor, reason=f"superseded by {record.version}")
    reasons: list[str] = []
    released = False
    conf = f"{s.release_confidence:.0%}"
    if diff is None:
        reasons.append("no release to compare with")
    elif (low := diff.lower_bound(s.release_confidence)) > s.release_margin:
        reasons.append(
            f"uplift over {state.released} {diff.value:+.4f} per decision, {conf} lower bound "
            f"{low:+.4f} > margin {s.release_margin:g}"
        )
        if release_if_better:
            system.release(record.version, actor=actor, reason=reasons[-1])
            released = True
    else:
        reasons.append(
            f"uplift over {state.released} {diff.value:+.4f} per decision, {conf} lower bound "
            f"{diff.lower_bound(s.release_confidence):+.4f} <= margin {s.release_margin:g}: "
            "kept in shadow"
        )
    return RetrainResult(
        c.id, record.version, n, cand, state.released, rel, diff, released, reasons
    )
