"""`offerloop serve --workers 2` on PostgreSQL + Redis: two processes on one port, one state."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from offerloop import Offerloop, load_settings
from tests.conftest import PG_URL, REDIS_URL, _drop, drop_service, service_env, unique_name
from tests.helpers import wait_healthy
from tests.serving.test_serve_process import _free_port

pytestmark = [pytest.mark.needs("postgres", "redis"), pytest.mark.slow]


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def test_two_worker_processes_share_one_state(tmp_path: Path) -> None:
    name = unique_name("w")
    env = service_env(name)
    data = tmp_path / "data"
    port = _free_port()
    cmd = [sys.executable, "-m", "offerloop", "serve", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(
        [*cmd, "--data-dir", str(data)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    ids: list[str] = []
    try:
        wait_healthy(proc, base)
        workers = [p for p in _children(proc.pid) if Path(f"/proc/{p}/cmdline").exists()]
        assert len(workers) >= 2  # the two service processes (and uvicorn's helpers)
        ev = {
            "event_id": "e1",
            "player_id": "p1",
            "type": "purchase",
            "ts": "2026-01-01T00:00:00Z",
            "properties": {"amount": 4.99},
        }
        assert httpx.post(f"{base}/v1/events", json={"events": [ev]}).json()["accepted"] == 1
        for _ in range(20):  # a new connection each: the kernel spreads them over both
            r = httpx.post(f"{base}/v1/decide", json={"player_id": "p1"}, timeout=10)
            assert r.status_code == 200, r.text
            ids.append(r.json()["decision_id"])
        # whichever process answered, it saw the event the other may have ingested
        for d in ids[:5]:
            got = httpx.get(f"{base}/v1/decisions/{d}", timeout=10)
            assert got.status_code == 200, got.text
            assert got.json()["features"]["purchases_total"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    settings = load_settings(
        env={},
        data_dir=str(data),
        database_url=PG_URL,
        database_schema=name,
        redis_url=REDIS_URL,
        redis_prefix=f"{name}:",
    )
    system = Offerloop(settings)  # replays any journal a worker left behind
    try:
        stored = system.backend.get_decisions(ids)
        assert sorted(stored) == sorted(ids)  # every answered decision, once
    finally:
        system.close()
        _drop(settings)


def test_workers_start_on_a_loaded_machine_without_a_bytecode_cache(tmp_path: Path) -> None:
    """Finding 10 of issue 13: `serve --workers 2` crash-looped under CPU load when no
    bytecode cache existed (each worker imported for 6–7 s and missed uvicorn's 5 s health
    ping). Here: four busy loops, and every module compiled from source."""
    name = unique_name("wl")
    env = service_env(name)
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(tmp_path / "no-cache"))
    burn = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    port = _free_port()
    cmd = [sys.executable, "-m", "offerloop", "serve", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(
        [*cmd, "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", seconds=300)
        first = set(_children(proc.pid))
        time.sleep(10)  # a crash loop shows as workers replaced meanwhile
        assert set(_children(proc.pid)) == first
        r = httpx.post(f"http://127.0.0.1:{port}/v1/decide", json={"player_id": "p"}, timeout=60)
        assert r.status_code == 200
    finally:
        for b in burn:
            b.kill()
            b.wait()
        proc.terminate()
        proc.wait(timeout=120)
        drop_service(name)
