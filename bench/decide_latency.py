"""Decision latency on the embedded backend (a first look; issue 8 brings the load test).

    .venv/bin/python bench/decide_latency.py [--decisions N]

Measures the server-side decision (features from the event log, released + shadow policies,
durable log write) called directly, and the same through the HTTP stack in-process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from offerloop import Offerloop, load_settings
from offerloop.serving import InProcessClient, create_app


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        system = Offerloop(load_settings(env={}, data_dir=d))
        system.bootstrap()
        direct, http = [], []
        for i in range(args.decisions):
            t = time.perf_counter()
            system.decide(f"p{i % 500}")
            direct.append(time.perf_counter() - t)
        with InProcessClient(create_app(system)) as c:
            for i in range(args.decisions):
                t = time.perf_counter()
                c.post("/v1/decide", json={"player_id": f"p{i % 500}"}).raise_for_status()
                http.append(time.perf_counter() - t)
        system.close()
    for name, xs in (("direct", direct), ("in-process HTTP", http)):
        print(
            f"{name:>16}: median {statistics.median(xs) * 1000:.3f} ms  "
            f"p95 {pct(xs, 95):.3f} ms  p99 {pct(xs, 99):.3f} ms  (n={len(xs)})"
        )


if __name__ == "__main__":
    main()
