"""Pipeline runs: one controller step + one retrain, under a lock, recorded and resumable.

The lock and the records live in the backend, so they hold across every process that shares
it: on the embedded backend an OS file lock (``flock``) on ``<data_dir>/pipeline.lock`` and a
table in the SQLite file; on PostgreSQL a session-level advisory lock and a table, so two
schedulers on two machines never run the same night twice. A holder that dies releases the
lock with its process (or its database session), so nothing stays stuck. Each run gets an id
and a record with its inputs (the data window), outputs (candidates, verdicts) and decisions
(the controller's steps), rewritten after every stage, so a crashed run leaves a record of
how far it got and the next run resumes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from offerloop._clock import format_ts
from offerloop._errors import Conflict
from offerloop._system import Offerloop
from offerloop.backends import DecisionRecord, RunLog
from offerloop.events import attribute
from offerloop.features import OfferHistory
from offerloop.monitoring._drift import drift_report
from offerloop.pipeline._controller import control, revenue_worse
from offerloop.pipeline._retrain import retrain

__all__ = ["MAX_ATTEMPTS", "list_runs", "pipeline_lock", "run_pipeline"]

# a run that crashed or failed this many times is abandoned; the next call starts afresh
MAX_ATTEMPTS = 3


@contextmanager
def pipeline_lock(log: RunLog) -> Iterator[None]:
    """Hold the pipeline lock of this store for the block (``Conflict`` if it is held)."""
    try:
        with log.run_lock("pipeline"):
            yield
    except Conflict as exc:
        if "pipeline lock" in exc.message:
            raise Conflict("another pipeline run holds the lock; try again later") from exc
        raise


def _unfinished(log: RunLog, campaign: str) -> dict[str, Any] | None:
    """The newest run of ``campaign`` that crashed or failed, if it is the newest run."""
    docs = log.runs(campaign)
    if docs and docs[-1].get("status") in ("started", "failed"):
        return docs[-1]
    return None


def run_pipeline(
    system: Offerloop, campaign: str | None = None, slot: float | None = None
) -> dict[str, Any]:
    """One controller step, then retrain (→ gate → shadow); returns (and records) the run.

    A run that crashed or failed is resumed by the next call: same id, same data window
    (``now`` is recorded at its start), finished stages skipped, candidates it registered
    reused instead of trained again. After ``MAX_ATTEMPTS`` it is abandoned and a new run
    starts. ``slot``: the schedule's firing time this run is for; a slot that already has a
    finished run is not run again (``Conflict``), so schedulers in several processes or on
    several machines sharing one store run each night once.
    """
    log: RunLog = system.backend
    cid = system.campaign(campaign).id
    with pipeline_lock(log):
        if slot is not None:
            done = [r for r in log.runs(cid) if r.get("slot") == slot]
            if any(r.get("status") == "finished" for r in done):
                raise Conflict(f"the run for {format_ts(slot)} has been done already")
        doc = _unfinished(log, cid)
        if doc is not None and doc.get("attempts", 1) >= MAX_ATTEMPTS:
            doc["status"] = "abandoned"
            log.put_run(doc)
            doc = None
        if doc is None:
            now = system.clock.now()
            # numbered in creation order (we hold the lock), then stamped with the data time
            seq = len(log.runs()) + 1
            stamp = format_ts(now).replace("-", "").replace(":", "")
            run_id = f"run-{seq:06d}-{stamp}"
            doc = {
                "id": run_id,
                "campaign": cid,
                "started_at": format_ts(now),
                "now": now,
                "status": "started",
                "attempts": 1,
                "stages": {},
                "slot": slot,
            }
        else:
            doc["attempts"] = doc.get("attempts", 1) + 1
            doc["status"] = "started"
            doc["resumed_at"] = format_ts(system.clock.now())
        log.put_run(doc)

        def stage(name: str, info: dict[str, Any]) -> None:
            doc["stages"][name] = info
            log.put_run(doc)

        t = time.perf_counter()
        try:
            if "controller" not in doc:
                # evidence first: judge what was deployed before; then add candidates
                doc["controller"] = [asdict(s) for s in control(system, cid)]
                log.put_run(doc)
            if "retrain" not in doc and "due" not in doc:
                due, why = _due(system, cid, float(doc["now"]))
                if due:
                    doc["due"] = why
                else:
                    doc["retrain"] = {"skipped": why}
                log.put_run(doc)
            if "retrain" not in doc:
                try:
                    r = retrain(
                        system,
                        cid,
                        actor=f"pipeline:{doc['id']}",
                        run=doc["id"],
                        now=float(doc["now"]),
                        on_stage=stage,
                    )
                    doc["retrain"] = {
                        "rows": r.rows,
                        "winner": r.version,
                        "shadowed": r.shadowed,
                        "deployed": r.deployed,
                        "action": r.action,
                        "reasons": r.reasons,
                        "candidates": [
                            {
                                "version": c.version,
                                "learner": c.learner,
                                "estimate": c.estimate.as_dict(),
                                "problems": list(c.problems),
                            }
                            for c in r.candidates
                        ],
                    }
                except Conflict as exc:
                    doc["retrain"] = {"skipped": exc.message}
                log.put_run(doc)
        except Exception as exc:
            doc["status"] = "failed"
            doc["error"] = f"{type(exc).__name__}: {exc}"
            log.put_run(doc)
            system.metrics.pipeline_runs.labels("failed").inc()
            raise
        doc["status"] = "finished"
        doc["finished_at"] = format_ts(system.clock.now())
        doc["seconds"] = round(doc.get("seconds", 0.0) + time.perf_counter() - t, 3)
        log.put_run(doc)
        system.metrics.pipeline_runs.labels("finished").inc()
        return doc


DRIFT_MIN_ROWS = 200  # decisions needed on each side before drift or a revenue drop counts
DRIFT_MAX_ROWS = 20000  # a day's decisions read for the drift check, at most
DAY = 86400.0


def _due(system: Offerloop, campaign: str, now: float) -> tuple[bool, str]:
    """Whether retraining is due at ``now``, and why. Due when ``retrain_min_growth`` is 0,
    when no finished run has retrained yet, when the last training is
    ``retrain_max_age_hours`` old, when the decisions with a final reward have grown by
    ``retrain_min_growth`` since it, or, sooner, when the world moved since it: a feature's
    live distribution drifted to the alert level (PSI >= 0.25) against the rows the last
    training saw, or the release's realised revenue per decision fell below what it earned
    before (always-valid, one-sided ``guard_confidence``)."""
    s = system.settings
    if s.retrain_min_growth <= 0:
        return True, "every run retrains (retrain_min_growth 0)"
    last = next(
        (
            r
            for r in reversed(system.backend.runs(campaign))
            if r.get("status") == "finished" and "rows" in (r.get("retrain") or {})
        ),
        None,
    )
    if last is None:
        return True, "no training yet"
    then = float(last["now"])
    if now - then >= s.retrain_max_age_hours * 3600.0:
        return True, f"the last training ({last['id']}) is {s.retrain_max_age_hours:g} h old"
    window = system.window_seconds
    before = system.backend.count_decisions(campaign, 0.0, then - window)
    matured = system.backend.count_decisions(campaign, 0.0, now - window)
    growth = matured / before - 1.0 if before else 0.0
    if matured >= (1.0 + s.retrain_min_growth) * before:
        return True, f"decisions with a final reward grew {growth:+.0%} since {last['id']}"
    moved = _world_moved(system, campaign, then, now)
    if moved:
        return True, moved
    return False, (
        f"not due: {matured} decisions with a final reward, {growth:+.0%} since {last['id']} "
        f"(retrain_min_growth {s.retrain_min_growth:.0%}); due by age at "
        f"{format_ts(then + s.retrain_max_age_hours * 3600.0)}"
    )


def _last_day(system: Offerloop, campaign: str, end: float) -> list[DecisionRecord]:
    """The decisions of the newest day of traffic before ``end`` (at most the newest
    ``DRIFT_MAX_ROWS``)."""
    rows = system.backend.decisions(campaign, 0.0, end, newest=DRIFT_MAX_ROWS)
    return [d for d in rows if d.ts > rows[-1].ts - DAY] if rows else []


def _world_moved(system: Offerloop, campaign: str, then: float, now: float) -> str:
    """Why the newest day of traffic no longer looks like the last day the last training
    (at ``then``) saw: "" when it does, or too few decisions tell. Whole days on both
    sides, so the hours of the day (players in other time zones, evenings) are no drift."""
    recent = _last_day(system, campaign, now + 1e-6)
    older = _last_day(system, campaign, then)
    if min(len(recent), len(older)) < DRIFT_MIN_ROWS:
        return ""
    # the player's offer history is written by offerloop's own decisions: it moves with the
    # policy, not with the world, so it does not call for retraining
    report = drift_report(
        [f for f in system.features if not isinstance(f, OfferHistory)],
        [d.training_row for d in older],
        [d.training_row for d in recent],
        [],
        [],
    )
    alerts = [f for f in report["features"] if f["state"] == "alert"]
    if alerts:
        worst = max(alerts, key=lambda f: f["psi"])
        return (
            f"feature drift since the last training: {worst['feature']} PSI "
            f"{worst['psi']:.2f} (alert at 0.25), the last day against the day before it"
        )
    window = system.window_seconds
    live = [d for d in recent if d.ts < now - window and not d.fallback and d.ts >= then]
    past = [d for d in older if d.ts < then - window and not d.fallback]
    if min(len(live), len(past)) < DRIFT_MIN_ROWS:
        return ""
    rewards = attribute(system.backend, [*live, *past], system.attribution, now)
    worse, summary = revenue_worse(
        [rewards[d.decision_id].revenue for d in live],
        [rewards[d.decision_id].revenue for d in past],
        system.settings.guard_confidence,
    )
    return f"realised revenue fell since the last training: {summary}" if worse else ""


def list_runs(log: RunLog, campaign: str | None = None) -> list[dict[str, Any]]:
    """Recorded runs, oldest first."""
    return log.runs(campaign)
