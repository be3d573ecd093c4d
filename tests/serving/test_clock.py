"""Time you can drive: under a manual clock the service's decisions, attribution windows and
schedules follow the time set through the admin API, forward only; a system-clock service
refuses to be driven."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from offerloop import Offerloop, Settings
from offerloop.serving import create_app
from tests.helpers import wait_healthy
from tests.serving.test_serve_process import _free_port

TOKEN = "clock-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_manual_clock_is_driven_forward_only(settings: Settings) -> None:
    system = Offerloop(settings.replace(admin_token=TOKEN, clock="manual:2026-03-01T00:00:00Z"))
    system.bootstrap()
    try:
        with TestClient(create_app(system)) as c:
            assert c.get("/v1/admin/clock", headers=AUTH).json() == {
                "now": "2026-03-01T00:00:00.000Z",
                "manual": True,
            }
            d = c.post("/v1/decide", json={"player_id": "p1"}).json()
            got = c.get(f"/v1/decisions/{d['decision_id']}").json()
            assert got["ts"] == "2026-03-01T00:00:00.000Z"
            r = c.post("/v1/admin/clock", json={"advance_seconds": 7200}, headers=AUTH)
            assert r.json()["now"] == "2026-03-01T02:00:00.000Z"
            d2 = c.post("/v1/decide", json={"player_id": "p2"}).json()
            got = c.get(f"/v1/decisions/{d2['decision_id']}").json()
            assert got["ts"] == "2026-03-01T02:00:00.000Z"
            back = c.post("/v1/admin/clock", json={"now": "2026-02-01T00:00:00Z"}, headers=AUTH)
            assert back.status_code == 409
            assert "only moves forward" in back.json()["error"]["message"]
            both = c.post(
                "/v1/admin/clock", json={"now": "2026-04-01T00:00:00Z", "advance_seconds": 1},
                headers=AUTH,
            )  # fmt: skip
            assert both.status_code == 422
            assert (
                c.post("/v1/admin/clock", json={"now": "tomorrow"}, headers=AUTH).status_code == 422
            )
            assert c.post("/v1/admin/clock", json={"advance_seconds": 1}).status_code == 401
            assert (
                c.get("/v1/admin/clock", headers=AUTH).json()["now"] == "2026-03-01T02:00:00.000Z"
            )
    finally:
        system.close()


def test_a_system_clock_service_refuses_to_be_driven(settings: Settings) -> None:
    system = Offerloop(settings.replace(admin_token=TOKEN))
    system.bootstrap()
    try:
        with TestClient(create_app(system)) as c:
            assert c.get("/v1/admin/clock", headers=AUTH).json()["manual"] is False
            r = c.post("/v1/admin/clock", json={"advance_seconds": 60}, headers=AUTH)
            assert r.status_code == 409
            assert "--clock manual" in r.json()["error"]["message"]
    finally:
        system.close()


def test_bad_clock_settings_are_named(settings: Settings) -> None:
    from offerloop import InvalidInput, load_settings

    with pytest.raises(InvalidInput, match="clock"):
        load_settings(env={}, data_dir=settings.data_dir, clock="manual:yesterday")


@pytest.mark.slow
def test_serve_follows_the_driven_clock_and_its_schedule(tmp_path: Path) -> None:
    """`serve --clock manual:…` with an hourly in-service schedule: a pipeline run fires when
    the driven clock passes the hour, however little wall time went by."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    env["OFFERLOOP_ADMIN_TOKEN"] = TOKEN
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "offerloop", "serve", "--port", str(port),
            "--data-dir", str(tmp_path / "data"), "--clock", "manual:2026-03-01T00:30:00Z",
            "--schedule", "1h",
        ],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base)
        assert httpx.get(f"{base}/v1/monitoring/runs", timeout=30).json()["runs"] == []
        r = httpx.post(f"{base}/v1/admin/clock", json={"advance_seconds": 3600}, headers=AUTH)
        assert r.json()["now"] == "2026-03-01T01:30:00.000Z"
        deadline = time.monotonic() + 120  # an upper bound for a loaded machine, not a speed
        while not (runs := httpx.get(f"{base}/v1/monitoring/runs", timeout=30).json()["runs"]):
            assert time.monotonic() < deadline, "the driven clock passed the hour: no run"
            time.sleep(0.2)
        assert runs[0]["started_at"].startswith("2026-03-01T01:")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()


def test_the_pipeline_runs_through_the_admin_api_at_the_driven_time(settings: Settings) -> None:
    from offerloop.pipeline import run_pipeline

    system = Offerloop(settings.replace(admin_token=TOKEN, clock="manual:2026-03-01T00:00:00Z"))
    system.bootstrap()
    try:
        app = create_app(system, pipeline=lambda campaign: run_pipeline(system, campaign))
        with TestClient(app) as c:
            c.post("/v1/admin/clock", json={"advance_seconds": 3 * 3600}, headers=AUTH)
            assert c.post("/v1/admin/pipeline/run", json={}).status_code == 401
            r = c.post("/v1/admin/pipeline/run", json={"campaign": "nope"}, headers=AUTH)
            assert r.status_code == 404, r.text
            r = c.post("/v1/admin/pipeline/run", json={}, headers=AUTH)
            assert r.status_code == 200, r.text
            doc = r.json()
            assert doc["status"] == "finished"
            assert doc["started_at"] == "2026-03-01T03:00:00.000Z"  # the service's time
            assert "skipped" in doc["retrain"]  # no decisions yet: nothing to train on
        with TestClient(create_app(system)) as c:  # an app built without a runner
            r = c.post("/v1/admin/pipeline/run", json={}, headers=AUTH)
            assert r.status_code == 409
            assert "no pipeline runner" in r.json()["error"]["message"]
    finally:
        system.close()


@pytest.mark.slow
def test_a_backtest_drives_serve_through_http_on_simulated_time(tmp_path: Path) -> None:
    """sim.Backtest against `serve --clock manual:…`: decisions at simulated times, the
    pipeline run through the admin API at the simulation's cadence, a model learned."""
    from offerloop.campaigns import default_campaign_path, load_campaign
    from offerloop.sim import Backtest, World

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    env |= {"OFFERLOOP_ADMIN_TOKEN": TOKEN, "OFFERLOOP_ATTRIBUTION_WINDOW_HOURS": "4"}
    start = "2026-03-02T00:00:00Z"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "offerloop", "serve", "--port", str(port),
            "--data-dir", str(tmp_path / "data"), "--clock", f"manual:{start}",
        ],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base)
        from offerloop._clock import parse_rfc3339

        world = World(load_campaign(default_campaign_path()), seed=3)
        runs: list[dict[str, object]] = []
        days = Backtest(
            base, world, parse_rfc3339(start), players=300, days=2, runs_per_day=2, token=TOKEN
        ).run(on_run=runs.append)
        assert [d.day for d in days] == [0, 1]
        assert all(d.decisions > 100 for d in days)
        assert [r["started_at"][:16] for r in runs] == [
            "2026-03-02T12:00", "2026-03-03T00:00", "2026-03-03T12:00", "2026-03-04T00:00",
        ]  # fmt: skip
        assert (
            httpx.get(f"{base}/v1/admin/clock", headers=AUTH)
            .json()["now"]
            .startswith("2026-03-04T00:00")
        )
        trained = [r for r in runs if "candidates" in r["retrain"]]  # type: ignore[operator]
        assert trained, runs
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()
