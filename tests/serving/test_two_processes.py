"""Two `offerloop serve` processes over the same PostgreSQL and Redis: features, releases,
canary assignment and decision ids agree across them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import drop_service, service_env, unique_name
from tests.helpers import wait_healthy
from tests.serving.test_serve_process import _free_port

pytestmark = [pytest.mark.needs("postgres", "redis"), pytest.mark.slow]

TOKEN = "s3cret-token"


def _start(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "offerloop", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[str, str]]:
    name = unique_name("mp")
    env = service_env(name)
    env.update(OFFERLOOP_ADMIN_TOKEN=TOKEN, OFFERLOOP_DATA_DIR=str(tmp_path / "local"))
    a, base_a = _start(tmp_path, env)
    wait_healthy(a, base_a)  # the first one creates the schema and builds the online state
    b, base_b = _start(tmp_path, env)
    try:
        wait_healthy(b, base_b)
        yield base_a, base_b
    finally:
        for p in (a, b):
            p.terminate()
        for p in (a, b):
            p.wait(timeout=20)
        drop_service(name)


def test_two_processes_share_features_releases_canary_and_ids(two: tuple[str, str]) -> None:
    a, b = two
    # a feature updated through one is served by the other at once (Redis, before the ack)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    r = httpx.post(
        f"{a}/v1/events",
        json={
            "events": [
                {
                    "event_id": "x1",
                    "player_id": "p7",
                    "type": "purchase",
                    "ts": now,
                    "properties": {"amount": 4.99},
                }
            ]
        },
        timeout=5,
    )
    assert r.json() == {
        "accepted": 1,
        "duplicates": 0,
        "attribution": {},
        "stored": "database",
        "features": "updated",
    }
    acked = time.perf_counter()
    got = httpx.get(f"{b}/v1/players/p7/features", timeout=5).json()
    seen_after = time.perf_counter() - acked
    values = {k: f["value"] for k, f in got["features"].items()}
    assert values["purchases_total"] == 1
    assert values["spend_total"] == pytest.approx(4.99)
    assert seen_after < 0.5  # one HTTP round trip; the value was already there
    # a release done through one is in force on the other within a second
    h = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{a}/v1/admin/release", json={"version": "rules-2"}, headers=h, timeout=5)
    assert r.status_code == 200, r.text
    released_at = time.monotonic()
    while (
        httpx.post(f"{b}/v1/decide", json={"player_id": "q"}, timeout=5).json()["model_version"]
        != "rules-2"
    ):
        assert time.monotonic() - released_at < 1.0, "release not in force on the other process"
        time.sleep(0.02)
    # canary assignment agrees: both processes put the same players in the canary
    r = httpx.post(
        f"{b}/v1/admin/canary", json={"version": "random-1", "share": 0.5}, headers=h, timeout=5
    )
    assert r.status_code == 200, r.text
    time.sleep(0.5)
    ids = []
    for i in range(40):
        da = httpx.post(f"{a}/v1/decide", json={"player_id": f"c{i}"}, timeout=5).json()
        db = httpx.post(f"{b}/v1/decide", json={"player_id": f"c{i}"}, timeout=5).json()
        assert da["mode"] == db["mode"]
        assert da["model_version"] == db["model_version"]
        ids += [da["decision_id"], db["decision_id"]]
    assert {"canary", "released"} <= {
        httpx.post(f"{a}/v1/decide", json={"player_id": f"c{i}"}, timeout=5).json()["mode"]
        for i in range(40)
    }
    # decision ids never collide, and each process reads the other's decisions
    assert len(set(ids)) == len(ids)
    assert httpx.get(f"{b}/v1/decisions/{ids[0]}", timeout=5).status_code == 200
