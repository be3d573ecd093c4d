"""Pipeline runs: recorded, never overlapping, and a crashed holder does not leave the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from offerloop import Conflict, ManualClock, Offerloop
from offerloop.pipeline import list_runs, pipeline_lock, run_pipeline
from offerloop.registry import Deployments
from tests.pipeline.test_retrain import _traffic


def test_a_run_is_recorded_with_its_decisions(system: Offerloop, clock: ManualClock) -> None:
    _traffic(system, clock, 400)
    clock.advance(25 * 3600)
    doc = run_pipeline(system)
    assert doc["status"] == "finished"
    assert doc["retrain"]["rows"] == 400
    assert len(doc["retrain"]["candidates"]) == 3
    assert doc["controller"][0]["action"] == "wait"
    assert [r["id"] for r in list_runs(system.backend)] == [doc["id"]]
    skipped = run_pipeline(system)  # nothing new is fine: still a recorded run
    assert skipped["status"] == "finished"


def test_a_run_retrains_once_the_data_has_grown_or_aged(
    system: Offerloop, clock: ManualClock
) -> None:
    """retrain_min_growth: a run between trainings is the controller alone, until the
    decisions with a final reward have grown by that share or the last training is
    retrain_max_age_hours old."""
    system.settings = system.settings.replace(
        retrain_min_growth=0.5, retrain_max_age_hours=60.0, learners=("linear",)
    )
    _traffic(system, clock, 400)
    clock.advance(25 * 3600)
    first = run_pipeline(system)
    assert first["retrain"]["rows"] == 400  # the first training is always due
    _traffic(system, clock, 100)  # +25 %
    clock.advance(25 * 3600)
    waited = run_pipeline(system)
    assert waited["status"] == "finished"
    assert "controller" in waited
    skipped = waited["retrain"]["skipped"]
    assert skipped.startswith("not due: 500 decisions with a final reward, +25% since "), skipped
    assert first["id"] in skipped
    assert "retrain_min_growth 50%" in skipped
    _traffic(system, clock, 100)  # +50 % over the last training
    clock.advance(25 * 3600)
    assert run_pipeline(system)["retrain"]["rows"] == 600
    clock.advance(59 * 3600)  # no new data, 59 h after the last training: not due
    doc = run_pipeline(system)
    assert "skipped" in doc["retrain"], doc.get("due")
    clock.advance(3600)  # 60 h: due by age
    assert run_pipeline(system)["retrain"]["rows"] == 600


def test_a_run_retrains_early_when_the_traffic_moved(system: Offerloop, clock: ManualClock) -> None:
    """Between trainings that growth and age do not call for yet, a run retrains as soon as
    the traffic no longer looks like what the release was trained on: a feature's live
    distribution at the drift alert level (here the players' local hour moves from noon to
    the night), and says why in the run record."""
    system.settings = system.settings.replace(
        retrain_min_growth=10.0, retrain_max_age_hours=1000.0, learners=("linear",)
    )

    def decisions(n: int, hour: float) -> None:
        for i in range(n):
            system.decide(f"p{i % 50}", None, {"local_hour": hour})
            clock.advance(60)
        clock.advance(25 * 3600)  # every window closed

    decisions(400, 12)
    first = run_pipeline(system)
    assert first["due"] == "no training yet"
    assert first["retrain"].get("rows") == 400, first["retrain"]
    decisions(300, 12)  # the same traffic again: not due
    doc = run_pipeline(system)
    assert doc["retrain"].get("skipped", "").startswith("not due: "), doc.get("due")
    decisions(300, 2)  # the same players, now at 2 am
    doc = run_pipeline(system)
    assert doc["due"].startswith("feature drift since the last training: local_hour PSI "), doc
    assert doc["retrain"]["rows"] == 1000


def test_runs_never_overlap(system: Offerloop) -> None:
    with pipeline_lock(system.backend), pytest.raises(Conflict, match="lock"):
        run_pipeline(system)


def _same_store(system: Offerloop) -> str:
    """The settings another process needs to open the same store, as JSON."""
    st = system.settings
    keys = ("data_dir", "database_url", "database_schema", "redis_url", "redis_prefix")
    return json.dumps({k: getattr(st, k) for k in keys})


def test_a_crashed_holder_releases_the_lock(system: Offerloop) -> None:
    """Another process (on PostgreSQL: another session, as another machine would be) holds
    the lock; killed with -9, it releases it."""
    code = (
        "import json, sys, time\n"
        "from offerloop import load_settings\n"
        "from offerloop.backends import open_backend\n"
        "from offerloop.pipeline import pipeline_lock\n"
        "backend = open_backend(load_settings(env={}, **json.loads(sys.argv[1])))\n"
        "with pipeline_lock(backend):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, _same_store(system)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(Conflict):
            run_pipeline(system)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60  # PostgreSQL ends the dead session's lock promptly
        while True:
            try:
                with pipeline_lock(system.backend):
                    break  # free again
            except Conflict:
                assert time.monotonic() < deadline, "the lock outlived its holder"
                time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _crash_after_registering(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies right after the candidates are registered, before any deploy."""

    def crash(*_a: object, **_k: object) -> None:
        raise RuntimeError("simulated crash")

    for step in ("deploy", "canary", "release"):
        monkeypatch.setattr(Deployments, step, crash)


def test_a_failed_run_is_resumed_without_training_twice(
    system: Offerloop, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    system.settings = system.settings.replace(
        gate_margin=-1e9, min_effective_rows=1, min_rewarded_rows=0
    )
    _traffic(system, clock, 400)
    clock.advance(25 * 3600)
    with monkeypatch.context() as m:
        _crash_after_registering(m)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run_pipeline(system)
    [failed] = list_runs(system.backend)
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: simulated crash"
    assert "controller" in failed  # how far it got
    assert "retrain" not in failed
    registered = failed["stages"]["candidates"]["versions"]
    n_models = len(system.registry.list())
    clock.advance(3600)
    _traffic(system, clock, 50)  # new data must not change a resumed run's window
    doc = run_pipeline(system)
    assert doc["id"] == failed["id"]
    assert doc["status"] == "finished"
    assert doc["attempts"] == 2
    assert doc["retrain"]["rows"] == 400
    assert [c["version"] for c in doc["retrain"]["candidates"]] == registered
    assert len(system.registry.list()) == n_models  # nothing trained or registered twice
    st = system.deployments.state(system.default_campaign)
    assert doc["retrain"]["deployed"] in (st.canary, *st.shadows)
    assert len(list_runs(system.backend)) == 1


def test_a_run_that_keeps_failing_is_abandoned(
    system: Offerloop, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from offerloop.pipeline import MAX_ATTEMPTS

    system.settings = system.settings.replace(
        gate_margin=-1e9, min_effective_rows=1, min_rewarded_rows=0
    )
    _traffic(system, clock, 400)
    clock.advance(25 * 3600)
    with monkeypatch.context() as m:
        _crash_after_registering(m)
        for _ in range(MAX_ATTEMPTS):
            with pytest.raises(RuntimeError):
                run_pipeline(system)
    doc = run_pipeline(system)
    first, second = list_runs(system.backend)
    assert (first["status"], first["attempts"]) == ("abandoned", MAX_ATTEMPTS)
    assert second["id"] == doc["id"] != first["id"]
    assert second["status"] == "finished"


def test_a_run_killed_mid_way_is_resumed(system: Offerloop, clock: ManualClock) -> None:
    """A real crash: the process kills itself (-9) right after registering candidates."""
    system.settings = system.settings.replace(
        gate_margin=-1e9, min_effective_rows=1, min_rewarded_rows=0
    )
    _traffic(system, clock, 400)
    clock.advance(25 * 3600)
    code = (
        "import json, os, signal, sys\n"
        "from offerloop import Offerloop, load_settings\n"
        "from offerloop.pipeline import run_pipeline\n"
        "from offerloop.registry import Deployments\n"
        "die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "Deployments.deploy = Deployments.canary = Deployments.release = die\n"
        "s = load_settings(env={}, **json.loads(sys.argv[1]))\n"
        "run_pipeline(Offerloop(s))\n"
    )
    st = system.settings
    same = {
        k: getattr(st, k)
        for k in (
            "data_dir",
            "gate_margin",
            "min_effective_rows",
            "min_rewarded_rows",
            "database_url",
            "database_schema",
            "redis_url",
        )
    }
    same["redis_prefix"] = st.redis_prefix
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(same)], capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    [crashed] = list_runs(system.backend)
    assert crashed["status"] == "started"  # it never got to say anything else
    n_models = len(system.registry.list())
    doc = run_pipeline(system)
    assert (doc["id"], doc["status"], doc["attempts"]) == (crashed["id"], "finished", 2)
    assert len(system.registry.list()) == n_models


def test_the_scheduler_fires_on_time_and_skips_when_locked(
    system: Offerloop, clock: ManualClock
) -> None:
    from offerloop._schedule import parse_schedule
    from offerloop.pipeline import PipelineScheduler

    sched = PipelineScheduler(system, parse_schedule("6h"))
    assert sched.next_at == 6 * 3600 * (clock.now() // (6 * 3600) + 1)
    assert sched.tick() is None  # not due yet
    clock.set(sched.next_at)
    assert sched.tick() == {
        "id": list_runs(system.backend)[0]["id"],
        "status": "finished",
    }
    clock.advance(6 * 3600)
    with pipeline_lock(system.backend):  # another process is running one
        skipped = sched.tick()
    assert skipped is not None
    assert skipped["status"] == "skipped"
    assert "lock" in skipped["reason"]
    metric = system.metrics.pipeline_runs
    assert metric.labels("finished")._value.get() == 1
    assert metric.labels("skipped")._value.get() == 1


@pytest.mark.slow
@pytest.mark.needs("postgres", "redis")
def test_two_schedulers_on_two_machines_run_each_night_once(tmp_path: Path) -> None:
    """Finding 9 of issue 13: with database_url set, the pipeline lock was a local file and
    the run records local JSON, so two schedulers could run the same night twice. Here two
    scheduler processes, each with a data directory of its own (as on two machines), share
    one PostgreSQL schema and race for the same firings."""
    from tests.conftest import _drop, service_env, unique_name

    name = unique_name("sch")
    env = service_env(name)
    cmd = [sys.executable, "-m", "offerloop", "pipeline", "schedule", "--every", "2s"]
    procs = [
        subprocess.Popen(
            [*cmd, "--runs", "3", "--data-dir", str(tmp_path / f"machine{i}")],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (_, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err
        from offerloop import Offerloop, load_settings

        settings = load_settings(env={}, data_dir=str(tmp_path / "machine0"), **_pg(env))
        system = Offerloop(settings)
        try:
            runs = list_runs(system.backend)
        finally:
            system.close()
        slots = [r["slot"] for r in runs if r["status"] == "finished"]
        assert slots, [o for o, _ in outs]
        assert len(slots) == len(set(slots))  # never one firing twice
        said = "\n".join(o for o, _ in outs)
        assert "skipped" in said  # the other scheduler saw it taken (lock, or slot done)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        _drop(load_settings(env={}, **_pg(env)))


def _pg(env: dict[str, str]) -> dict[str, str]:
    keys = ("database_url", "database_schema", "redis_url", "redis_prefix")
    return {k: env[f"OFFERLOOP_{k.upper()}"] for k in keys}
