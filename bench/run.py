"""`make bench`: the benchmarks that exist so far; each prints its numbers (docs/benchmarks.md)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # bench.* imports
BENCHES = [
    "cli_start.py",
    "sim_ratios.py",
    "decide_latency.py",
    "features_bench.py",
    "restart.py",
    "scale.py",
    "feast_peer.py",
    "learners_vs_vw.py",
    "backends_bench.py",
    "load_test.py",
    "soak.py",
    "faults.py",
    "evaluation.py",
    "learning.py",
]

if __name__ == "__main__":
    for name in BENCHES:
        print(f"== {name}", flush=True)
        sys.argv = [name]
        runpy.run_path(str(HERE / name), run_name="__main__")
