"""Pipeline runs: one controller step + one retrain, under a lock, recorded and resumable.

The lock is an OS file lock (``flock``) on ``<data_dir>/pipeline.lock``: two runs never
overlap, and a crashed holder releases it with its process, so nothing stays stuck. Each run
gets an id and leaves a JSON record under ``<data_dir>/runs/`` with its inputs (the data
window), outputs (candidates, verdicts) and decisions (the controller's steps), rewritten
atomically after every stage, so a crashed run leaves a record of how far it got and the next
run resumes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from offerloop._clock import format_ts
from offerloop._errors import Conflict
from offerloop._system import Offerloop
from offerloop.pipeline._controller import control
from offerloop.pipeline._retrain import retrain

__all__ = ["MAX_ATTEMPTS", "list_runs", "pipeline_lock", "run_pipeline"]

# a run that crashed or failed this many times is abandoned; the next call starts afresh
MAX_ATTEMPTS = 3


@contextmanager
def pipeline_lock(data_dir: str | Path) -> Iterator[None]:
    path = Path(data_dir) / "pipeline.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Conflict("another pipeline run holds the lock; try again later") from exc
        yield
    finally:
        os.close(fd)


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, path)


def _unfinished(runs: Path, campaign: str) -> dict[str, Any] | None:
    """The newest run of ``campaign`` that crashed or failed, if it is the newest run."""
    docs = [json.loads(p.read_text()) for p in sorted(runs.glob("run-*.json"))]
    docs = [d for d in docs if d.get("campaign") == campaign]
    if docs and docs[-1].get("status") in ("started", "failed"):
        last: dict[str, Any] = docs[-1]
        return last
    return None


def run_pipeline(system: Offerloop, campaign: str | None = None) -> dict[str, Any]:
    """One controller step, then retrain (→ gate → shadow); returns (and records) the run.

    A run that crashed or failed is resumed by the next call: same id, same data window
    (``now`` is recorded at its start), finished stages skipped, candidates it registered
    reused instead of trained again. After ``MAX_ATTEMPTS`` it is abandoned and a new run
    starts.
    """
    runs = Path(system.settings.data_dir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    cid = system.campaign(campaign).id
    with pipeline_lock(system.settings.data_dir):
        doc = _unfinished(runs, cid)
        if doc is not None and doc.get("attempts", 1) >= MAX_ATTEMPTS:
            doc["status"] = "abandoned"
            _write(runs / f"{doc['id']}.json", doc)
            doc = None
        if doc is None:
            now = system.clock.now()
            # numbered in creation order (we hold the lock), then stamped with the data time
            seq = len(list(runs.glob("run-*.json"))) + 1
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
            }
        else:
            doc["attempts"] = doc.get("attempts", 1) + 1
            doc["status"] = "started"
            doc["resumed_at"] = format_ts(system.clock.now())
        path = runs / f"{doc['id']}.json"
        _write(path, doc)

        def stage(name: str, info: dict[str, Any]) -> None:
            doc["stages"][name] = info
            _write(path, doc)

        t = time.perf_counter()
        try:
            if "controller" not in doc:
                # evidence first: judge what was deployed before; then add candidates
                doc["controller"] = [asdict(s) for s in control(system, cid)]
                _write(path, doc)
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
                _write(path, doc)
        except Exception as exc:
            doc["status"] = "failed"
            doc["error"] = f"{type(exc).__name__}: {exc}"
            _write(path, doc)
            system.metrics.pipeline_runs.labels("failed").inc()
            raise
        doc["status"] = "finished"
        doc["finished_at"] = format_ts(system.clock.now())
        doc["seconds"] = round(doc.get("seconds", 0.0) + time.perf_counter() - t, 3)
        _write(path, doc)
        system.metrics.pipeline_runs.labels("finished").inc()
        return doc


def list_runs(data_dir: str | Path) -> list[dict[str, Any]]:
    runs = Path(data_dir) / "runs"
    return [json.loads(p.read_text()) for p in sorted(runs.glob("run-*.json"))]
