"""How long `offerloop serve` takes to answer after a restart, with N events in its log (issue 18).

    .venv/bin/python bench/restart.py [--events 10000000] [--rounds 3] [--log-rounds 1]

The log is bench/features_bench.py's synthetic one (N events of N/100 players, the default
features' event types; generated once into bench/.data and reused), copied into a fresh data
directory. Measured from starting the process to its first healthy `/healthz`, on the system
clock:

* **log**: snapshots off (`snapshot_interval_seconds = 0`): every start replays the whole log;
* **snapshot**: the default; the first start replays the log and writes a snapshot when it
  stops (SIGTERM), each later start reads the snapshot and the log after it.

Medians over ``--log-rounds`` and ``--rounds`` starts; results in bench/results/restart_<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.features_bench import generate  # noqa: E402
from offerloop.testing import wait_healthy  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data: Path, snapshots: bool) -> tuple[float, str]:
    """Seconds from starting `offerloop serve` to its first healthy answer, and what it said
    about the online state; the process is stopped with SIGTERM (a graceful stop)."""
    port = _free_port()
    env = {
        **os.environ,
        "OFFERLOOP_SNAPSHOT_INTERVAL_SECONDS": "600" if snapshots else "0",
        "OFFERLOOP_ADMIN_TOKEN": "bench",
    }
    cmd = [sys.executable, "-m", "offerloop", "serve", "--data-dir", str(data), "--port", str(port)]
    log = data.parent / f"serve-{port}.log"
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_healthy(proc, f"http://127.0.0.1:{port}", 3600)
            seconds = time.perf_counter() - t0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(600)
    said = next((ln for ln in log.read_text().splitlines() if "online features" in ln), "")
    return seconds, said


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=3, help="starts from a snapshot")
    ap.add_argument("--log-rounds", type=int, default=1, help="starts replaying the log")
    args = ap.parse_args()
    source, _ = generate(args.events, 1000)
    out: dict[str, object] = {"events": args.events}
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent / ".data") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(source, data)
        (data / "complete").unlink(missing_ok=True)
        log_starts = []
        for i in range(args.log_rounds):
            seconds, said = start(data, snapshots=False)
            log_starts.append(seconds)
            print(f"log replay start {i + 1}: {seconds:.1f} s ({said})", flush=True)
        seconds, said = start(data, snapshots=True)  # replays, then writes a snapshot at stop
        print(f"first start with snapshots on: {seconds:.1f} s ({said})", flush=True)
        snap = data / "online-state.snapshot"
        snapshot_starts = []
        for i in range(args.rounds):
            seconds, said = start(data, snapshots=True)
            snapshot_starts.append(seconds)
            print(f"snapshot start {i + 1}: {seconds:.1f} s ({said})", flush=True)
        out.update(
            log_seconds=log_starts,
            snapshot_seconds=snapshot_starts,
            log_median=statistics.median(log_starts),
            snapshot_median=statistics.median(snapshot_starts),
            snapshot_bytes=snap.stat().st_size,
            speedup=statistics.median(log_starts) / statistics.median(snapshot_starts),
        )
    print(
        f"{args.events:,} events: healthy after {out['log_median']:.1f} s replaying the log, "
        f"{out['snapshot_median']:.1f} s from a snapshot ({out['speedup']:.0f}x; snapshot "
        f"{int(out['snapshot_bytes']) / 2**20:.0f} MiB)"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"restart_{args.events}.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
