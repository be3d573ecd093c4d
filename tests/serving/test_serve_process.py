"""`offerloop serve` as a real process on loopback: the README's first steps work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_healthy

pytestmark = pytest.mark.slow  # real processes or long scenarios


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_over_http(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "offerloop",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            "--schedule",
            "every 1s",  # the pipeline inside the service process
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base)
        d = httpx.post(f"{base}/v1/decide", json={"player_id": "p42"}, timeout=5).json()
        assert d["model_version"] == "random-1"
        got = httpx.get(f"{base}/v1/decisions/{d['decision_id']}", timeout=5).json()
        assert got["offer_id"] == d["offer_id"]
        assert httpx.post(f"{base}/v1/decide", json={}, timeout=5).status_code == 422
        assert "offerloop_decisions_total" in httpx.get(f"{base}/metrics", timeout=5).text
        # the in-service schedule ran the pipeline (nothing to train on yet: a recorded run)
        deadline = time.monotonic() + 120  # an upper bound for a loaded machine, not a speed
        while not httpx.get(f"{base}/v1/monitoring/runs", timeout=30).json()["runs"]:
            assert time.monotonic() < deadline, "no scheduled run inside the service"
            time.sleep(0.2)
        while (
            'offerloop_pipeline_runs_total{outcome="finished"}'
            not in httpx.get(f"{base}/metrics", timeout=5).text
        ):
            assert time.monotonic() < deadline, "scheduled run not counted"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()


def test_a_second_server_on_one_embedded_data_dir_is_refused(tmp_path: Path) -> None:
    """Finding 8 of issue 13: two `serve` on one embedded data dir were not refused, and their
    online features diverged silently (3 purchases seen by one, 0 by the other)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    data = str(tmp_path / "data")
    port = _free_port()
    first = subprocess.Popen(
        [sys.executable, "-m", "offerloop", "serve", "--port", str(port), "--data-dir", data],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(first, f"http://127.0.0.1:{port}")
        argv = ["serve", "--port", str(_free_port()), "--data-dir", data]
        second = subprocess.run(
            [sys.executable, "-m", "offerloop", *argv],
            cwd=tmp_path,
            env={**env, "COLUMNS": "300"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert second.returncode == 1
        assert "another `offerloop serve` is running on data directory" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.wait(timeout=60)


def test_serve_logs_each_request_with_access_log(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    port = _free_port()
    log = tmp_path / "serve.log"
    argv = ["serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "offerloop", *argv, "--access-log", "--log-level", "info"],
            cwd=tmp_path,
            env=env,
            stdout=err,  # uvicorn writes the access log to stdout, the rest to stderr
            stderr=err,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(proc, base)
            assert httpx.post(f"{base}/v1/decide", json={"player_id": "p"}, timeout=30).is_success
            assert httpx.post(f"{base}/v1/decide", json={}, timeout=30).status_code == 422
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    text = log.read_text()
    assert '"POST /v1/decide HTTP/1.1" 200' in text
    assert '"POST /v1/decide HTTP/1.1" 422' in text
    assert "Traceback" not in text


def test_sigterm_stops_serve_gracefully_and_the_next_start_reads_the_snapshot(
    tmp_path: Path,
) -> None:
    """SIGTERM (what `kill`, systemd and Kubernetes send): the process exits 0 after its
    cleanup, the journaled decisions are committed and the online state's snapshot is written;
    the next start serves from that snapshot. (uvicorn raises the signal again after its
    shutdown; with the default handler the process used to die there, skipping all of it.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    data = tmp_path / "data"

    def start(log: Path) -> tuple[subprocess.Popen[bytes], str]:
        port = _free_port()
        argv = ["serve", "--port", str(port), "--data-dir", str(data)]
        with log.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "offerloop", *argv],
                cwd=tmp_path,
                env={**env, "COLUMNS": "300"},
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        base = f"http://127.0.0.1:{port}"
        wait_healthy(proc, base)
        return proc, base

    proc, base = start(tmp_path / "first.log")
    try:
        from offerloop import format_ts

        at = format_ts(time.time() - 60)
        events = [
            {"event_id": f"e{i}", "player_id": f"p{i % 5}", "type": "session_start", "ts": at}
            for i in range(20)
        ]
        assert httpx.post(f"{base}/v1/events", json={"events": events}, timeout=30).is_success
        ids = [
            httpx.post(f"{base}/v1/decide", json={"player_id": f"p{i}"}, timeout=30).json()[
                "decision_id"
            ]
            for i in range(5)
        ]
    finally:
        proc.terminate()
        code = proc.wait(timeout=120)
    assert code == 0, (tmp_path / "first.log").read_text()
    assert (data / "online-state.snapshot").exists()
    proc, base = start(tmp_path / "second.log")
    try:
        for decision_id in ids:  # committed before the first process ended
            assert httpx.get(f"{base}/v1/decisions/{decision_id}", timeout=30).is_success
    finally:
        proc.terminate()
        assert proc.wait(timeout=120) == 0
    said = (tmp_path / "second.log").read_text()
    assert "online features from a snapshot of 5 players" in said, said
