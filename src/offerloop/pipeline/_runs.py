"""Pipeline runs: one retrain + one controller step, under a lock, recorded.

The lock is an OS file lock (``flock``) on ``<data_dir>/pipeline.lock``: two runs never
overlap, and a crashed holder releases it with its process, so nothing stays stuck. Each run
gets an id and leaves a JSON record under ``<data_dir>/runs/`` with its inputs, outputs and
decisions (written atomically when it ends; a run that crashed leaves a ``started`` record).
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

__all__ = ["list_runs", "pipeline_lock", "run_pipeline"]


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


def run_pipeline(
    system: Offerloop, campaign: str | None = None, release_if_better: bool = False
) -> dict[str, Any]:
    """Retrain, then one controller step; returns (and records) what happened."""
    runs = Path(system.settings.data_dir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    with pipeline_lock(system.settings.data_dir):
        started = system.clock.now()
        run_id = f"run-{int(started * 1000):013d}-{os.getpid()}"
        path = runs / f"{run_id}.json"
        doc: dict[str, Any] = {
            "id": run_id,
            "started_at": format_ts(started),
            "campaign": system.campaign(campaign).id,
            "status": "started",
        }
        _write(path, doc)
        t = time.perf_counter()
        try:
            r = retrain(
                system, campaign, actor=f"pipeline:{run_id}", release_if_better=release_if_better
            )
            doc["retrain"] = {
                "rows": r.rows,
                "winner": r.version,
                "released": r.released,
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
        doc["controller"] = [asdict(s) for s in control(system, campaign)]
        doc["status"] = "finished"
        doc["seconds"] = round(time.perf_counter() - t, 3)
        _write(path, doc)
        return doc


def list_runs(data_dir: str | Path) -> list[dict[str, Any]]:
    runs = Path(data_dir) / "runs"
    return [json.loads(p.read_text()) for p in sorted(runs.glob("run-*.json"))]
