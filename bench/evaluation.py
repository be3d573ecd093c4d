"""Coverage of every off-policy estimator's 95 % interval on logs with rare rewards and skewed
logging propensities (the long version of tests/training/test_rare_coverage.py), against the
normal approximation on the same logs, and the speed of a wide ridge (issue 14).

    .venv/bin/python bench/evaluation.py [--repetitions 400]

Prints one line per world and estimator: coverage, the normal interval's coverage, the mean
width relative to the true value, and how often the estimate was flagged thin.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "src"))

from offerloop.policies import LinearRevenue, LoggedData
from offerloop.sim._logs import BanditWorld, coverage

WORLDS = [
    ("purchases 1%, 10 offers, skew 2", dict(rate=0.01, skew=2.0), 5000),
    ("purchases 0.3%, 10 offers, skew 2", dict(rate=0.003, skew=2.0), 5000),
    ("purchases 1%, 10 offers, skew 3", dict(rate=0.01, skew=3.0), 3000),
    ("purchases 2%, 30 offers, skew 2", dict(rate=0.02, skew=2.0, offers=30), 10000),
    ("clicks 0.5%, 10 offers, skew 1", dict(rate=0.005, skew=1.0, priced=False), 20000),
    ("clicks 0.2%, 10 offers, skew 1", dict(rate=0.002, skew=1.0, priced=False), 20000),
]
JUDGES = ("fitted", "biased", "constant")


def wide_ridge(rows: int = 10_000, items: int = 80, numeric: int = 110) -> tuple[float, float]:
    """Seconds and peak MB to fit the linear learner on ``items`` actions × ``numeric``
    features (the issue's 8,828-column case)."""
    rng = np.random.default_rng(0)
    names = [f"f{j}" for j in range(numeric)]
    spec = [{"name": n, "type": "float", "default": 0.0} for n in names]
    offers = [f"item{i}" for i in range(items)]
    feats = [dict(zip(names, rng.random(numeric).tolist(), strict=True)) for _ in range(rows)]
    data = LoggedData(
        feats,
        [offers[i] for i in rng.integers(0, items, rows)],
        (rng.random(rows) < 0.01).astype(np.float64),
        np.full(rows, 1.0 / items),
        np.arange(rows, dtype=np.float64),
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    LinearRevenue(offers, 1.0, spec).fit(data)
    took = time.perf_counter() - t
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return took, peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repetitions", type=int, default=400)
    args = ap.parse_args()
    worst: dict[str, float] = {}
    print(f"{'world':36} {'judge':8} {'estimator':10} {'covered':>8} {'normal':>8} "
          f"{'width/truth':>11} {'thin':>5}")  # fmt: skip
    for label, world, rows in WORLDS:
        for judge in JUDGES:
            for c in coverage(BanditWorld(**world, seed=11), rows, args.repetitions, judge, 12):  # type: ignore[arg-type]
                worst[c.estimator] = min(worst.get(c.estimator, 1.0), c.covered)
                print(
                    f"{label:36} {judge:8} {c.estimator:10} {c.covered:8.1%} "
                    f"{c.normal_covered:8.1%} {c.width:11.2f} {c.thin:5.0%}",
                    flush=True,
                )
    print("worst coverage per estimator: " + ", ".join(f"{k} {v:.1%}" for k, v in worst.items()))
    took, peak = wide_ridge()
    print(f"linear learner, 10,000 rows × 80 actions × 110 features (8,880 coefficients): "
          f"{took:.2f} s, peak +{peak:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
