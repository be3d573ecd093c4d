"""kill -9 of a loaded service, then a restart: every acknowledged event and decision is there
exactly once, and the client's retry of what was not acknowledged is deduplicated."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_healthy
from tests.serving.test_serve_process import _free_port

pytestmark = pytest.mark.slow  # real processes or long scenarios


def _serve(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "offerloop",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _batch(i: int) -> dict[str, object]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "events": [
            {
                "event_id": f"b{i}-{j}",
                "player_id": f"p{(i * 7 + j) % 50}",
                "type": "session_start",
                "ts": now,
            }
            for j in range(20)
        ]
    }


def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(tmp_path, port)
    wait_healthy(proc, base)
    acked_batches: list[int] = []
    sent_batches: list[int] = []
    acked_decisions: list[str] = []
    stop = threading.Event()

    def ingest() -> None:
        i = 0
        with httpx.Client(timeout=5) as c:
            while not stop.is_set():
                sent_batches.append(i)
                try:
                    if c.post(f"{base}/v1/events", json=_batch(i)).status_code == 200:
                        acked_batches.append(i)
                except httpx.TransportError:
                    return
                i += 1

    def decide() -> None:
        with httpx.Client(timeout=5) as c:
            n = 0
            while not stop.is_set():
                try:
                    r = c.post(f"{base}/v1/decide", json={"player_id": f"p{n % 50}"})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    acked_decisions.append(r.json()["decision_id"])
                n += 1

    threads = [threading.Thread(target=t) for t in (ingest, decide)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    os.kill(proc.pid, signal.SIGKILL)  # mid-flight, no shutdown of any kind
    proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(acked_batches) > 5
    assert len(acked_decisions) > 20
    # restart on the same data; the client retries everything it ever sent
    proc = _serve(tmp_path, port)
    try:
        wait_healthy(proc, base)
        accepted = duplicates = 0
        with httpx.Client(timeout=10) as c:
            for i in sent_batches:
                body = c.post(f"{base}/v1/events", json=_batch(i)).json()
                accepted += body["accepted"]
                duplicates += body["duplicates"]
            for d in acked_decisions:
                assert c.get(f"{base}/v1/decisions/{d}").status_code == 200
        # everything acknowledged before the crash was already there
        assert duplicates >= 20 * len(acked_batches)
        assert accepted + duplicates == 20 * len(sent_batches)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    db = sqlite3.connect(tmp_path / "data" / "offerloop.db")
    try:
        mine = "FROM events WHERE type != 'offer_outcome'"  # the client's, not offerloop's
        (events,) = db.execute(f"SELECT count(*) {mine}").fetchone()
        (unique,) = db.execute(f"SELECT count(DISTINCT event_id) {mine}").fetchone()
        seen = [
            r[0] for r in db.execute("SELECT event_id FROM events WHERE type = 'offer_outcome'")
        ]
        (decisions,) = db.execute(
            f"SELECT count(*) FROM decisions WHERE decision_id IN "
            f"({','.join('?' * len(acked_decisions))})",
            acked_decisions,
        ).fetchone()
    finally:
        db.close()
    assert events == unique == 20 * len(sent_batches)  # exactly once, retries deduplicated
    assert decisions == len(acked_decisions)
    # each acknowledged decision's offer_outcome event (events._offers) survived, once
    assert len(seen) == len(set(seen))
    assert {f"{d}.seen" for d in acked_decisions} <= set(seen)
