"""Pipeline runs: recorded, never overlapping, and a crashed holder does not leave the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from offerloop import Conflict, ManualClock, Offerloop
from offerloop.pipeline import list_runs, pipeline_lock, run_pipeline
from tests.pipeline.test_retrain import _traffic


def test_a_run_is_recorded_with_its_decisions(system: Offerloop, clock: ManualClock) -> None:
    _traffic(system, clock, 400)
    clock.advance(25 * 3600)
    doc = run_pipeline(system)
    assert doc["status"] == "finished"
    assert doc["retrain"]["rows"] == 400
    assert len(doc["retrain"]["candidates"]) == 3
    assert doc["controller"][0]["action"] == "wait"
    assert [r["id"] for r in list_runs(system.settings.data_dir)] == [doc["id"]]
    skipped = run_pipeline(system)  # nothing new is fine: still a recorded run
    assert skipped["status"] == "finished"


def test_runs_never_overlap(system: Offerloop) -> None:
    with pipeline_lock(system.settings.data_dir), pytest.raises(Conflict, match="lock"):
        run_pipeline(system)


def test_a_crashed_holder_releases_the_lock(system: Offerloop) -> None:
    code = (
        "import sys, time\n"
        "from offerloop.pipeline import pipeline_lock\n"
        "with pipeline_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, system.settings.data_dir], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(Conflict):
            run_pipeline(system)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        time.sleep(0.1)
        with pipeline_lock(system.settings.data_dir):
            pass  # free again
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
