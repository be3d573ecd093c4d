"""Soak: `offerloop serve` (embedded, issue-8 configuration) under a steady load for 10 minutes;
its resident memory (with its shadow worker process) is sampled every 10 s (docs/benchmarks.md).

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 300]

The load is `hey` at a fixed rate on /v1/decide (new decision records, shadows scored in the
background); with ``--events``, `wrk` also ingests event batches closed-loop (a one-second
none otherwise), and the online state keeps every event inside the features' windows (30
days here), so memory then grows with the events by design. Reported: RSS after
warm-up, at the end, its growth, and the slope of a line fitted to the second half (MB/hour).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.decide_latency import _setup
from bench.load_test import RESULTS, WRK_LUA, _wait, start_serve


def rss_mb(pid: int) -> float:
    """Resident memory of the service and its children (the shadow worker process)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    total = 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:
            continue  # a child that just exited
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=300)
    ap.add_argument(
        "--events",
        action="store_true",
        help="Also ingest events closed-loop (the online state then grows with the events kept "
        "for the feature windows, by design).",
    )
    args = ap.parse_args()
    seconds = int(args.minutes * 60)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        system = _setup("embedded", tmp)
        settings = system.settings
        system.close()
        proc, base = start_serve(settings)
        samples: list[tuple[float, float]] = []
        try:
            _wait(f"{base}/healthz", proc)
            (tmp / "events.lua").write_text(WRK_LUA)
            load = subprocess.Popen(
                [
                    "hey",
                    "-z",
                    f"{seconds}s",
                    "-c",
                    "10",
                    "-q",
                    str(args.rate // 10),
                    "-m",
                    "POST",
                    "-T",
                    "application/json",
                    "-d",
                    '{"player_id": "p42"}',
                    f"{base}/v1/decide",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            events = subprocess.Popen(
                [
                    "wrk",
                    "-t",
                    "1",
                    "-c",
                    "1",
                    "-d",
                    f"{seconds}s",
                    "-s",
                    str(tmp / "events.lua"),
                    base,
                ]
                if args.events
                else ["true"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            t0 = time.monotonic()
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(10):
                    samples.append((time.monotonic() - t0, rss_mb(proc.pid)))

            threading.Thread(target=sample, daemon=True).start()
            out, _ = load.communicate(timeout=seconds + 120)
            events.wait(timeout=120)
            stop.set()
            summary = httpx.get(f"{base}/metrics", timeout=10).text
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    t = np.array([s[0] for s in samples])
    m = np.array([s[1] for s in samples])
    half = t >= t[-1] / 2
    slope = float(np.polyfit(t[half] / 3600.0, m[half], 1)[0]) if half.sum() > 2 else 0.0
    warm = float(m[min(5, len(m) - 1)])  # after the first minute
    res = {
        "minutes": args.minutes,
        "rate": args.rate,
        "rss_after_1min_mb": warm,
        "rss_end_mb": float(m[-1]),
        "rss_max_mb": float(m.max()),
        "growth_mb": float(m[-1] - warm),
        "slope_second_half_mb_per_hour": slope,
        "samples": samples,
        "hey_summary": "\n".join(x for x in out.splitlines() if "Requests/sec" in x or "[2" in x),
        "decisions_total": sum(
            float(x.rsplit(" ", 1)[1])
            for x in summary.splitlines()
            if x.startswith("offerloop_decisions_total{")
        ),
        "events_total": sum(
            float(x.rsplit(" ", 1)[1])
            for x in summary.splitlines()
            if x.startswith('offerloop_events_total{outcome="accepted"}')
        ),
    }
    kind = "decisions + events" if args.events else "decisions"
    print(
        f"soak {args.minutes:g} min at {args.rate}/s {kind}: RSS "
        f"{warm:.0f} MB after 1 min -> {m[-1]:.0f} MB at the end (max {m.max():.0f}); "
        f"growth {res['growth_mb']:+.1f} MB; second-half slope {slope:+.1f} MB/h; "
        f"{res['decisions_total']:,.0f} decisions, {res['events_total']:,.0f} events"
    )
    RESULTS.mkdir(exist_ok=True)
    name = "soak_events.json" if args.events else "soak.json"
    (RESULTS / name).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
