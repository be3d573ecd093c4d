"""The controller: advances versions through shadow → canary → released on evidence from live
traffic, and rolls back what does worse.

* **shadow → canary:** each shadow is judged on the live decisions the release served since
  the shadow was deployed (rewards matured). The shadow's and the release's probabilities of
  every offer are recomputed from the logged features, and their paired difference is
  estimated doubly robustly, with a purchase-probability × price judge (a registered
  ``purchase_gbt`` model) and only the rows after that judge's training window. After
  ``shadow_min_decisions`` such decisions, a one-sided ``shadow_confidence`` lower bound above
  zero makes the best such shadow the canary for ``canary_share`` of players.
* **canary → rolled back:** canary and release serve comparable players (a stable hash splits
  them) over the same days. Once ``canary_min_decisions`` canary decisions have matured, a
  canary whose realised revenue per decision is lower than the release's with one-sided
  ``guard_confidence`` is removed. Its error rate (decisions it failed to score, which the
  release served instead) above ``max_error_rate`` removes it too, judged on all its decisions
  from the 100th on, and so does a latency breach: its decisions are split into 5 readings in
  time, and in a majority of them its p99 scoring time (CPU time of the scoring thread, so a
  busy host does not count against the model) is above ``scoring_budget_ms`` *and* above
  ``latency_tolerance`` × the release's p99 over the same interval.
* **canary → released:** after ``canary_promote_decisions`` matured canary decisions with its
  guardrails holding, it is released.
* **canary share:** the probability that it earns more than the release, by its live doubly
  robust uplift (capped by what realised revenue says); while that estimate is too thin, by
  the realised revenue of its players against the release's alone (a randomised split, so no
  importance weights), within ``[canary_share, canary_max_share]``.
* **fresh release → rolled back:** for its first ``release_watch_decisions`` matured decisions,
  a release is compared with the release before it (its last decisions before the switch);
  worse with one-sided ``guard_confidence``, or in breach of the latency guardrail against the
  previous release's scoring times: the previous version is released again. A release that
  itself came from a rollback is not watched (no ping-pong).
* **shadow → removed:** a shadow that fails to score more than ``max_error_rate`` of decisions.

Every step is a recorded transition with its reason and the actor ``controller``.
"""

from __future__ import annotations

import math
import weakref
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from offerloop._system import Offerloop
from offerloop.backends import DecisionRecord
from offerloop.decisions import ordinary
from offerloop.events import attribute
from offerloop.pipeline._judge import live_judge
from offerloop.pipeline._traffic import share_for, share_of
from offerloop.policies import RewardModel
from offerloop.registry import RELEASED, SHADOW, release_stack
from offerloop.training import (
    Estimate,
    Evidence,
    compare_arrays,
    offer_columns,
    reward_bound,
)
from offerloop.training._intervals import SEQUENCE_HORIZON, sequence_stretch

__all__ = ["GUARD_MIN_DECISIONS", "ControlStep", "control", "revenue_worse"]

# error-rate and latency guardrails are judged from this many decisions on
GUARD_MIN_DECISIONS = 100
# a fresh release is compared with the previous release's decisions of up to a week before it
WATCH_LOOKBACK_SECONDS = 7 * 86400.0


@dataclass(frozen=True)
class ControlStep:
    action: str  # "canary" | "share" | "release" | "rollback" | "remove" | "wait"
    version: str | None
    reason: str
    share: float = 0.0  # for "canary" and "share": the canary's new share of players


def _z(one_sided: float) -> float:
    return NormalDist().inv_cdf(one_sided)


def _since(system: Offerloop, campaign: str, version: str) -> float:
    return next(
        (d.since for d in system.backend.deployments(campaign) if d.version == version), 0.0
    )


def control(system: Offerloop, campaign: str | None = None) -> list[ControlStep]:
    """One step: judge the fresh release, the canary and every shadow; apply and return."""
    c = system.campaign(campaign)
    system.flush_shadows()  # this process's decisions carry their shadow scores
    st = system.deployments.state(c.id)
    steps: list[ControlStep] = []
    log = _Log(system, c.id)
    starts = [_start_of(system, c.id, v) for v in (*st.shadows, st.canary) if v]
    if starts:
        log.since(min(starts))  # one read for every judge below
    if st.released:
        watch = _watch_release(system, c.id, st.released, log)
        if watch is not None:
            steps.append(watch)
            if watch.action == "rollback":
                system.deployments.rollback(c.id, actor="controller", reason=watch.reason)
                return steps
    if not st.released:
        return steps
    live = {
        v: _live_uplift(system, c.id, v, st.released, log) for v in (*st.shadows, st.canary) if v
    }
    canary_step = None
    if st.canary:
        canary_step = _judge_canary(system, c.id, st.canary, st.released, live[st.canary], log)
        steps.append(canary_step)
    judged = [_judge_shadow(system, c.id, v, st.released, live[v], log) for v in st.shadows]
    steps.extend(j[0] for j in judged if j[0].action != "canary")
    ready = sorted((j for j in judged if j[0].action == "canary"), key=lambda j: -j[1])
    released_now = canary_step is not None and canary_step.action == "release"
    if ready and not released_now:  # evidence against the old release waits a run
        step, low = ready[0]
        running = st.canary if canary_step is None or canary_step.action != "rollback" else None
        rival = live.get(running) if running else None
        if running is None:
            steps.append(step)
        elif rival is not None and rival[0] is not None and low > rival[0].value:
            steps.append(
                ControlStep(
                    "canary",
                    step.version,
                    f"{step.reason}; its lower bound beats canary {running}'s estimate "
                    f"{rival[0].value:+.4f}, which returns to shadow",
                    step.share,
                )
            )
        else:
            steps.append(
                ControlStep("wait", step.version, f"{step.reason}; canary {running} keeps its turn")
            )
    for step in steps:
        if step.action in ("rollback", "remove") and step.version:
            system.deployments.undeploy(
                step.version,
                actor="controller",
                reason=step.reason,
                action="rollback" if step.action == "rollback" else "retire",
            )
        elif step.action == "release" and step.version:
            system.deployments.release(step.version, actor="controller", reason=step.reason)
        elif step.action in ("canary", "share") and step.version:
            replaced = system.deployments.state(c.id).canary
            system.deployments.canary(
                step.version, step.share, actor="controller", reason=step.reason
            )
            if replaced and replaced != step.version:
                system.deployments.deploy(replaced, SHADOW, actor="controller", reason=step.reason)
    return steps


# -- evidence --------------------------------------------------------------------------------
def _rewards(system: Offerloop, decisions: Sequence[DecisionRecord]) -> dict[str, float]:
    now = system.clock.now()
    got = attribute(system.backend, decisions, system.attribution, now)
    return {k: r.revenue for k, r in got.items()}


def _matured(system: Offerloop, decisions: Sequence[DecisionRecord]) -> list[DecisionRecord]:
    end = system.clock.now() - system.window_seconds
    return [d for d in decisions if d.ts < end]


LOG_ROWS = 12000  # a controller step reads at most the newest this many decisions


@dataclass(frozen=True)
class _LiveRows:
    """The matured, ordinary (``decisions.ordinary``) decisions of one controller step, as
    the arrays every live judgment of that step shares."""

    rows: list[DecisionRecord]
    ts: np.ndarray
    logged: np.ndarray
    propensities: np.ndarray
    rewards: np.ndarray


class _Log:
    """One controller step's view of the campaign's log: the decisions up to now, read once
    (from the earliest time a judge asks for, at most the newest ``LOG_ROWS``), their rewards
    attributed once, and what the live judgments share (the rows as arrays, each policy's
    probabilities and each judge's predictions over them, the judge for each start)."""

    def __init__(self, system: Offerloop, campaign: str) -> None:
        self.system, self.campaign = system, campaign
        self.now = system.clock.now()
        self._start = math.inf
        self._rows: list[DecisionRecord] = []
        self._ts: list[float] = []
        self._capped = False
        self._rewards: dict[str, float] = {}
        self._live: _LiveRows | None = None
        self._probs: dict[str, np.ndarray] = {}
        self._judges: dict[float, tuple[RewardModel, float] | None] = {}
        self._predictions: dict[int, tuple[RewardModel, np.ndarray, np.ndarray | None]] = {}

    def since(self, start: float) -> list[DecisionRecord]:
        """Decisions from ``start`` on, of the newest ``LOG_ROWS`` (older ones are never
        judged on: every judgment needs only recent rows)."""
        if start < self._start and not self._capped:
            self._rows = self.system.backend.decisions(
                self.campaign, start, self.now + 1e-6, newest=LOG_ROWS
            )
            self._ts = [d.ts for d in self._rows]
            self._start = start
            self._capped = len(self._rows) >= LOG_ROWS
            self._live = None
            self._probs.clear()
            self._predictions.clear()
        return self._rows[bisect_left(self._ts, start) :]

    def rewards(self, decisions: Sequence[DecisionRecord]) -> dict[str, float]:
        missing = [d for d in decisions if d.decision_id not in self._rewards]
        if missing:
            self._rewards.update(_rewards(self.system, missing))
        return {d.decision_id: self._rewards[d.decision_id] for d in decisions}

    def live(self) -> _LiveRows:
        """The newest ``LIVE_ROWS`` matured, ordinary decisions read so far, as arrays
        (built once; every live judgment reads at most the newest ``LIVE_ROWS`` of them, so
        policies and judges score no older row)."""
        if self._live is None:
            every = [d for d in _matured(self.system, self._rows) if ordinary(d.fallback)]
            every = every[-LIVE_ROWS:]
            rewards = self.rewards(every)
            offers = self.system.campaign(self.campaign).offer_ids
            self._live = _LiveRows(
                rows=every,
                ts=np.array([d.ts for d in every], dtype=np.float64),
                logged=offer_columns(offers, [d.offer_id for d in every]),
                propensities=np.array([d.propensity for d in every], dtype=np.float64),
                rewards=np.array([rewards[d.decision_id] for d in every], dtype=np.float64),
            )
        return self._live

    def probabilities(self, version: str) -> np.ndarray:
        """``version``'s probabilities of every offer on :meth:`live`'s rows."""
        if version not in self._probs:
            policy = self.system.registry.load(version)
            self._probs[version] = _scored(_SCORES, policy, self.live().rows, policy.act_eligible)
        return self._probs[version]

    def judge(self, since: float) -> tuple[RewardModel, float] | None:
        """The judge for ``since`` (``pipeline._judge.live_judge``), found (or fitted) once per
        step."""
        if since not in self._judges:
            self._judges[since] = live_judge(self.system, self.campaign, since)
        return self._judges[since]

    def predictions(self, model: RewardModel) -> tuple[np.ndarray, np.ndarray | None]:
        """``model``'s predicted rewards and their variances on :meth:`live`'s rows (the
        model is kept with them, so its id cannot be reused within the step)."""
        got = self._predictions.get(id(model))
        if got is None:

            def both(features: list[dict[str, Any]]) -> np.ndarray:
                """Predictions, then variances (when the model has them), side by side: one
                pass over the rows serves both."""
                predicted = np.asarray(model.predict_batch(features))
                variance = model.reward_variance(features)
                return predicted if variance is None else np.hstack([predicted, variance])

            scores = _scored(_SCORES, model, self.live().rows, both)
            k = len(self.system.campaign(self.campaign).offer_ids)
            got = (model, scores[:, :k], scores[:, k:] if scores.shape[1] > k else None)
            self._predictions[id(model)] = got
        return got[1], got[2]


# Scores of registered (immutable) policies and judges on decision rows, kept across steps:
# each step scores only the rows it has not scored before. A row is the same row while the
# backend returns the same record object (its decoder reuses a record while the stored row
# is unchanged); a row changed since (shadow scores, backfill) is scored again.
_Memo = weakref.WeakKeyDictionary[object, dict[str, tuple[DecisionRecord, np.ndarray]]]
_SCORES: _Memo = weakref.WeakKeyDictionary()  # policies' probabilities, judges' predictions


def _scored(
    memos: _Memo,
    owner: object,
    rows: Sequence[DecisionRecord],
    score: Callable[[list[dict[str, Any]]], np.ndarray],
) -> np.ndarray:
    """``score`` of every row's training features (rows × offers), computed only for rows
    ``owner`` has not scored before; the memo keeps just these rows."""
    if not rows:  # the model's own shape for no rows, as when nothing was memoised
        return np.asarray(score([]), dtype=np.float64)
    memo = memos.get(owner, {})
    missing = [d for d in rows if (hit := memo.get(d.decision_id)) is None or hit[0] is not d]
    if missing:
        fresh = np.asarray(score([d.training_row for d in missing]), dtype=np.float64)
        memo.update({d.decision_id: (d, fresh[i]) for i, d in enumerate(missing)})
    out = np.array([memo[d.decision_id][1] for d in rows], dtype=np.float64)
    memos[owner] = {d.decision_id: memo[d.decision_id] for d in rows}
    return out


def _served(decisions: Sequence[DecisionRecord], version: str, mode: str) -> list[DecisionRecord]:
    return [d for d in decisions if d.model_version == version and d.mode == mode]


def _p99(decisions: Sequence[DecisionRecord]) -> float:
    return float(np.percentile([d.score_ms for d in decisions], 99)) if decisions else 0.0


READINGS = 5  # the latency guardrail's readings in time; a majority must breach
MIN_REFERENCE = 20  # reference decisions needed in a reading to compare against


def _latency_breach(
    system: Offerloop,
    version: str,
    served: Sequence[DecisionRecord],
    reference: Sequence[DecisionRecord],
    aligned: bool,
) -> str | None:
    """Why ``version``'s scoring time breaks the budget (None: it does not). ``reference``:
    the release's decisions, over the same time (``aligned``: each reading is compared with
    the reference decisions of its own interval) or from before (all of them)."""
    s = system.settings
    chunks = [list(c) for c in np.array_split(np.array(served, dtype=object), READINGS)]
    over = 0
    worst = (0.0, 0.0)
    for chunk in chunks:
        if not chunk:
            continue
        lo, hi = chunk[0].ts, chunk[-1].ts
        ref = [d for d in reference if lo <= d.ts <= hi] if aligned else list(reference)
        p_c = _p99(chunk)
        p_r = _p99(ref) if len(ref) >= MIN_REFERENCE else None
        limit = (
            max(s.scoring_budget_ms, s.latency_tolerance * p_r)
            if p_r is not None
            else (s.scoring_budget_ms * s.latency_tolerance)
        )
        if p_c > limit:
            over += 1
            worst = max(worst, (p_c, p_r or 0.0))
    if over <= READINGS // 2:
        return None
    return (
        f"{version} p99 scoring time {worst[0]:.2f} ms > scoring_budget_ms "
        f"{s.scoring_budget_ms:g} and > {s.latency_tolerance:g} x the release's "
        f"{worst[1]:.2f} ms in {over} of {READINGS} readings"
    )


def _welch(new: Sequence[float], old: Sequence[float]) -> tuple[float, float]:
    """The difference of the means and its (Welch) standard error."""
    diff = float(np.mean(new) - np.mean(old))
    se = math.sqrt(float(np.var(new, ddof=1)) / len(new) + float(np.var(old, ddof=1)) / len(old))
    return diff, se


def revenue_worse(
    new: Sequence[float], old: Sequence[float], confidence: float
) -> tuple[bool, str]:
    """Is ``new`` worse than ``old`` in mean with one-sided ``confidence``? A Welch z-test
    made always-valid (``Estimate.always_valid``'s stretch at ``new``'s count): the
    controller asks again at every run, so a fixed-n test would be a peeking test."""
    diff, se = _welch(new, old)
    stretch = sequence_stretch(len(new), 2.0 * (1.0 - confidence), SEQUENCE_HORIZON)
    upper = diff + stretch * _z(confidence) * se
    return upper < 0, (
        f"{np.mean(new):.4f} vs {np.mean(old):.4f} per decision ({len(new)} vs {len(old)} "
        f"matured): {diff:+.4f}, always-valid one-sided {confidence:.0%} upper bound {upper:+.4f}"
    )


def _guardrails(
    system: Offerloop,
    version: str,
    served: Sequence[DecisionRecord],
    failed: int,
    reference: Sequence[DecisionRecord] = (),
    aligned: bool = True,
) -> str | None:
    """Why ``version`` breaks its error-rate or latency budget, or None."""
    s = system.settings
    total = len(served) + failed
    if total < GUARD_MIN_DECISIONS:
        return None
    if failed / total > s.max_error_rate:
        return (
            f"{version} failed to score {failed} of {total} decisions "
            f"({failed / total:.1%} > max_error_rate {s.max_error_rate:.1%})"
        )
    return _latency_breach(system, version, served, reference, aligned)


# -- judges ----------------------------------------------------------------------------------
def _watch_release(
    system: Offerloop, campaign: str, released: str, log: _Log
) -> ControlStep | None:
    s = system.settings
    transitions = system.backend.transitions(campaign)
    start = next(
        (t for t in reversed(transitions) if t.version == released and t.to_mode == RELEASED),
        None,
    )
    stack = release_stack(transitions)
    if start is None or start.action == "rollback" or len(stack) < 2 or stack[-1] != released:
        return None
    previous = stack[-2]
    after = _served(log.since(start.ts), released, RELEASED)
    matured = _matured(system, after)
    if len(matured) >= s.release_watch_decisions:
        return None  # no longer fresh
    earlier = system.backend.decisions(
        campaign,
        start.ts - WATCH_LOOKBACK_SECONDS,
        start.ts,
        newest=3 * s.release_watch_decisions,
    )
    previous_served = _served(earlier, previous, RELEASED)[-s.release_watch_decisions :]
    if broken := _guardrails(system, released, after, 0, previous_served, aligned=False):
        return ControlStep("rollback", released, f"fresh release breaks a guardrail: {broken}")
    if len(matured) < s.canary_min_decisions:
        return ControlStep(
            "wait",
            released,
            f"fresh release {released} watched: {len(matured)} of {s.canary_min_decisions} "
            "matured decisions",
        )
    before = _matured(system, previous_served)
    if len(before) < 2:
        return None
    rewards = log.rewards([*matured, *before])
    worse, summary = revenue_worse(
        [rewards[d.decision_id] for d in matured],
        [rewards[d.decision_id] for d in before],
        s.guard_confidence,
    )
    if worse:
        return ControlStep(
            "rollback", released, f"fresh release earns less than {previous}: {summary}"
        )
    return ControlStep("wait", released, f"fresh release {released} watched: {summary}")


def _judge_canary(
    system: Offerloop,
    campaign: str,
    canary: str,
    released: str | None,
    live: tuple[Estimate | None, str],
    log: _Log,
) -> ControlStep:
    s = system.settings
    decisions = log.since(_since(system, campaign, canary))
    served = _served(decisions, canary, "canary")
    failed = sum(1 for d in decisions if f"canary {canary} failed" in d.fallback)
    # the other arm: whatever release served meanwhile (refreshes replace its fit)
    # (decisions the campaign's eligibility, schedule or caps shaped count in both arms)
    reference = [d for d in decisions if d.mode == RELEASED and ordinary(d.fallback)]
    if broken := _guardrails(system, canary, served, failed, reference):
        return ControlStep("rollback", canary, f"canary breaks a guardrail: {broken}")
    arm_c = _matured(system, served)
    arm_r = _matured(system, reference)
    summary = f"canary {canary}: {len(arm_c)} of {s.canary_min_decisions} matured decisions"
    gap = -math.inf  # realised revenue per decision, canary minus release
    realised: float | None = None  # P(the canary earns more) on realised revenue, once known
    if len(arm_c) >= s.canary_min_decisions and len(arm_r) >= 2:
        rewards = log.rewards([*arm_c, *arm_r])
        got_c = [rewards[d.decision_id] for d in arm_c]
        got_r = [rewards[d.decision_id] for d in arm_r]
        worse, summary = revenue_worse(got_c, got_r, s.guard_confidence)
        gap, se = _welch(got_c, got_r)
        realised = NormalDist().cdf(gap / se) if se > 0 else float(gap > 0)
        summary = f"canary vs the release ({released}): {summary}"
        if worse:
            return ControlStep("rollback", canary, f"canary worse: {summary}")
    diff, note = live
    conf = f"always-valid {s.sequential_confidence:.0%}"
    if diff is not None and diff.usable:
        lo, hi = diff.always_valid(s.sequential_confidence)
        sequential = f"live uplift {diff.value:+.4f} per decision, {conf} [{lo:+.4f}, {hi:+.4f}]"
        if hi < 0:
            return ControlStep("rollback", canary, f"canary worse: {sequential} ({note})")
        if lo > 0:
            return ControlStep(
                "release", canary, f"canary better: {sequential} ({note}); {summary}"
            )
        summary = f"{summary}; {sequential}"
    elif note:
        summary = f"{summary}; {note}"
    if len(arm_c) >= s.canary_promote_decisions:
        ahead = gap >= 0 and (diff is None or not diff.usable or diff.value >= 0)
        if ahead:
            return ControlStep("release", canary, f"canary held and earns no less: {summary}")
        if len(arm_c) >= 2 * s.canary_promote_decisions:
            return ControlStep(
                "remove", canary, f"canary not ahead after {len(arm_c)} decisions: {summary}"
            )
    # its share: P(it earns more), by the live estimate and no more than realised revenue
    # says; while the off-policy estimate is too thin, by realised revenue alone (the canary's
    # and the release's own players, a randomised split: no importance weights to be thin)
    share: float | None = None
    if diff is not None and diff.usable:
        share = share_for(diff, s, 1.0 if realised is None else realised)
    elif realised is not None:
        share = share_of(realised, s)
    current = system.deployments.state(campaign).canary_share
    if share is not None and abs(share - current) >= 0.05:
        return ControlStep(
            "share", canary, f"canary {canary} to {share:.0%} of players: {summary}", share
        )
    return ControlStep("wait", canary, f"canary {canary} watching: {summary}")


LIVE_ROWS = 5000  # live evidence: at most the newest this many matured decisions


def _start_of(system: Offerloop, campaign: str, version: str) -> float:
    """Where ``version``'s live evidence starts: after its training data ended (rows it never
    trained on) or, for a version without a training window, when it was deployed."""
    record = system.registry.get(version)
    return float(record.lineage.get("data_end", _since(system, campaign, version)))


def _live_uplift(
    system: Offerloop, campaign: str, version: str, released: str, log: _Log
) -> tuple[Estimate | None, str]:
    """The paired doubly robust uplift of ``version`` over the release on the newest
    ``LIVE_ROWS`` matured live decisions it never trained on (``_start_of``), whichever arm
    served them, each with its logged propensity; judged by a purchase × price model
    independent of those rows. (None, why) when there is nothing to judge on yet."""
    s = system.settings
    if version == released:
        return None, ""
    judge = log.judge(_start_of(system, campaign, version))
    if judge is None:
        return None, "no data yet to fit a judge on"
    model, start = judge
    live = log.live()
    pick = np.flatnonzero(live.ts >= start)[-LIVE_ROWS:]
    if len(pick) < s.shadow_min_decisions:
        return None, f"{len(pick)} of {s.shadow_min_decisions} matured live decisions"
    predicted, variance = log.predictions(model)
    logged = live.logged[pick]
    top = reward_bound([o.price for o in system.campaign(campaign).offers], s)
    diff = compare_arrays(
        log.probabilities(version)[pick],
        log.probabilities(released)[pick],
        logged,
        live.propensities[pick],
        live.rewards[pick],
        predicted[pick],
        None if variance is None else variance[pick, logged],
        top,
        Evidence.of(s),
    )
    note = f"on {len(pick)} live decisions"
    if not diff.usable:
        note += "; evidence too thin: " + "; ".join(diff.warnings)
    return diff, note


def _judge_shadow(
    system: Offerloop,
    campaign: str,
    version: str,
    released: str,
    live: tuple[Estimate | None, str],
    log: _Log,
) -> tuple[ControlStep, float]:
    """A shadow's step and, when it is ready for canary, its lower bound (to rank by)."""
    s = system.settings
    decisions = log.since(_since(system, campaign, version))
    scored = sum(1 for d in decisions if any(sh.version == version for sh in d.shadows))
    total = len(decisions)
    if total >= GUARD_MIN_DECISIONS and (total - scored) / total > s.max_error_rate:
        return ControlStep(
            "remove",
            version,
            f"shadow {version} failed to score {total - scored} of {total} decisions "
            f"(> max_error_rate {s.max_error_rate:.1%})",
        ), 0.0
    diff, note = live
    if diff is None:
        return ControlStep("wait", version, f"{version} in shadow: {note}"), 0.0
    low = diff.lower_bound(s.shadow_confidence)
    lo, hi = diff.always_valid(s.sequential_confidence)
    summary = (
        f"live doubly robust uplift over {released} {diff.value:+.4f} per decision "
        f"(one-sided {s.shadow_confidence:.0%} lower bound {low:+.4f}; always-valid "
        f"{s.sequential_confidence:.0%} [{lo:+.4f}, {hi:+.4f}]) {note}"
    )
    if not diff.usable:
        if diff.n >= LIVE_ROWS:  # the most rows a judgment ever reads: it cannot get thicker
            return ControlStep(
                "remove",
                version,
                f"retired: too thin to judge on the most live decisions a judgment reads "
                f"({LIVE_ROWS}); the release explores too little where it would differ: "
                f"{summary}",
            ), low
        return ControlStep("wait", version, f"{version} in shadow: {summary}"), low
    if hi < 0:
        return ControlStep(
            "remove", version, f"retired: earns less than the release: {summary}"
        ), low
    if low > 0:
        return ControlStep("canary", version, summary, share_for(diff, s)), low
    return ControlStep("wait", version, f"{version} in shadow: {summary}, not yet positive"), low
