"""Retraining: closed windows only, registered with lineage, deployed as the evidence allows."""

from __future__ import annotations

import pytest

from offerloop import Conflict, ManualClock, Offerloop, format_ts
from offerloop.events import EventIn
from offerloop.pipeline import retrain

HOUR = 3600.0


def _traffic(system: Offerloop, clock: ManualClock, n: int, sells: str = "starter") -> None:
    events = []
    for i in range(n):
        d = system.decide(f"p{i % 50}")
        if d.offer.bundle.id == sells:  # a simple world: one bundle sells
            events.append(
                EventIn(
                    event_id=f"b{i}",
                    player_id=d.record.player_id,
                    type="purchase",
                    ts=format_ts(clock.now() + 60),
                    properties={"amount": d.offer.price, "decision_id": d.record.decision_id},
                )
            )
        clock.advance(30)
    clock.advance(120)
    for j in range(0, len(events), 500):
        system.ingest(events[j : j + 500])


def test_the_first_learned_model_takes_over_from_the_day_one_policy(
    system: Offerloop, clock: ManualClock
) -> None:
    """handover = release: the first learned model replaces the day-one policy at once (the
    fresh-release watch guards it) instead of waiting as a canary; later fits of its
    learner refresh it, and of several recency half-lives of that learner the one whose
    model fits the newest rows best is chosen (here the world changed: the recent one)."""
    system.settings = system.settings.replace(
        handover="release", learners=("linear", "linear@6h"), min_effective_rows=1
    )
    _traffic(system, clock, 400)
    clock.advance(25 * HOUR)
    r = retrain(system, actor="test")
    state = system.deployments.state(system.default_campaign)
    assert r.action == "released"
    assert state.released == r.deployed
    assert not state.canary
    assert "first learned model replaces the day-one policy" in r.reasons[0]
    first = system.registry.get(state.released).lineage["learner"]
    assert first in ("linear", "linear@6h")
    _traffic(system, clock, 600, sells="coins")  # tastes move: now coins sell
    clock.advance(25 * HOUR)
    r = retrain(system, actor="test")
    assert r.action == "released", r.reasons
    chosen = system.registry.get(system.deployments.state(system.default_campaign).released)
    assert chosen.lineage["learner"] == "linear@6h", r.reasons
    assert "linear@6h fits the newest rows best (held-out loss" in r.reasons[0]
    losses = {c.learner: c.loss for c in r.candidates}
    assert losses["linear@6h"] < losses["linear"]


def test_too_little_final_data_is_refused(system: Offerloop, clock: ManualClock) -> None:
    _traffic(system, clock, 50)
    with pytest.raises(Conflict, match="have a final reward"):
        retrain(system)


def test_retrain_registers_with_lineage_and_shadows(system: Offerloop, clock: ManualClock) -> None:
    _traffic(system, clock, 600)
    clock.advance(25 * HOUR)
    _traffic(system, clock, 30)  # open windows: must be left out
    system.settings = system.settings.replace(
        gate_margin=-1e9, min_effective_rows=1, min_rewarded_rows=0
    )  # every winner passes the gate
    r = retrain(system, actor="test")
    assert r.rows == 600
    m = system.registry.get(r.version)
    assert m.lineage["rows"] == 600
    assert m.lineage["open_excluded"] == 30
    assert m.lineage["train_rows"] + m.lineage["valid_rows"] == 600
    assert m.metrics["release_version"] == r.release_version
    # no canary was running: the winner, refitted on all rows, is the canary at once
    st = system.deployments.state(system.default_campaign)
    assert r.shadowed
    assert r.action == "canary"
    assert r.deployed == st.canary
    assert 0.2 <= st.canary_share <= 0.9
    refit = system.registry.get(r.deployed)
    assert refit.lineage["refit_of"] == r.version
    assert refit.lineage["train_rows"] == 600
    assert system.deployments.state(system.default_campaign).released == r.release_version
    # with the canary busy, later winners go to shadow; with room for two learned shadows the
    # oldest keeps its place (it has gathered the most evidence) and the newest slot turns over
    system.settings = system.settings.replace(max_learned_shadows=2)
    r2 = retrain(system, actor="test")
    r3 = retrain(system, actor="test")
    r4 = retrain(system, actor="test")
    shadows = system.deployments.state(system.default_campaign).shadows
    assert r2.action == r3.action == r4.action == "shadow"
    assert r2.deployed in shadows
    assert r4.deployed in shadows
    assert r3.deployed not in shadows
    # every candidate is registered with its verdict and model checks
    for cand in r3.candidates:
        m = system.registry.get(cand.version)
        assert m.metrics["checks"] == ["passed"]
        assert m.metrics["verdict"] in (
            "best candidate, passed the gate",
            "passed checks, not the best",
        )
        assert m.lineage["features_sha256"] == system.features.digest()
    # the learned policy prefers the offers that sold
    policy = system.registry.load(r3.version)
    probs = policy.act(system.backend.decisions(system.default_campaign, 0, 1e12)[0].features)
    c = system.campaign(None)
    best = c.offers[int(probs.argmax())]
    assert best.bundle.id == "starter"


def test_a_winner_that_fails_the_gate_is_registered_but_not_deployed(
    system: Offerloop, clock: ManualClock
) -> None:
    _traffic(system, clock, 600)
    clock.advance(25 * HOUR)
    # nothing beats the release by that (and the evidence bar is not what stops it)
    system.settings = system.settings.replace(
        gate_margin=1e9, min_effective_rows=1, min_rewarded_rows=0
    )
    before = system.deployments.state(system.default_campaign)
    r = retrain(system, actor="test")
    assert not r.shadowed
    assert system.deployments.state(system.default_campaign).shadows == before.shadows
    verdict = system.registry.get(r.version).metrics["verdict"]
    assert verdict.startswith("best candidate, failed the gate: uplift lower bound")
    assert "<= margin 1e+09" in r.reasons[0]


def test_retrain_within_a_run_is_idempotent(system: Offerloop, clock: ManualClock) -> None:
    _traffic(system, clock, 600)
    clock.advance(25 * HOUR)
    system.settings = system.settings.replace(
        gate_margin=-1e9, min_effective_rows=1, min_rewarded_rows=0
    )
    now = clock.now()
    first = retrain(system, actor="test", run="run-x", now=now)
    clock.advance(HOUR)  # a resumed run later: same window, nothing trained or registered twice
    n_models = len(system.registry.list())
    again = retrain(system, actor="test", run="run-x", now=now)
    assert len(system.registry.list()) == n_models
    assert [c.version for c in again.candidates] == [c.version for c in first.candidates]
    assert again.rows == first.rows
    assert [c.estimate for c in again.candidates] == [c.estimate for c in first.candidates]


def test_retraining_reads_only_its_window_of_days(system: Offerloop, clock: ManualClock) -> None:
    """training_window_days bounds what a run reads: the decisions of that many days before
    the newest one with a final reward (not before the clock: a replay far from the clock
    reads the same rows); 0 reads the whole log."""
    system.settings = system.settings.replace(
        learners=("linear",), min_effective_rows=1, training_window_days=1.0
    )
    _traffic(system, clock, 300)  # day 0
    first_day_end = clock.now()
    clock.advance(3 * 86400)
    _traffic(system, clock, 300)  # three days later
    clock.advance(25 * HOUR + 30 * 86400)  # the clock runs far ahead of the data
    r = retrain(system, actor="test")
    lineage = system.registry.get(r.version).lineage
    assert r.rows == 300  # the older day is outside the window
    assert lineage["data_start"] > first_day_end
    system.settings = system.settings.replace(training_window_days=0.0)
    assert retrain(system, actor="test").rows == 600
