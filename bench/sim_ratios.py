"""How much personalisation pays in the simulated world (docs/simulator.md).

    .venv/bin/python bench/sim_ratios.py [--players N] [--seeds K]

Expected revenue per decision of the oracle (best offer per player), of the best single offer
shown to everyone, and of uniform random, over fresh players of several seeds.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from offerloop.campaigns import default_campaign_path, load_campaign
from offerloop.sim import World


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--players", type=int, default=20000)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    c = load_campaign(default_campaign_path())
    vs_random, vs_best = [], []
    for seed in range(args.seeds):
        w = World(c, seed=seed)
        e = np.array(
            [w.expected_revenue(w.new_player(f"p{i}", 0.0), 0.0) for i in range(args.players)]
        )
        oracle, rnd, best = e.max(1).mean(), e.mean(), e.mean(0).max()
        vs_random.append(oracle / rnd)
        vs_best.append(oracle / best)
        print(
            f"seed {seed}: oracle {oracle:.3f}  random {rnd:.3f}  best single {best:.3f} "
            f"({c.offers[int(e.mean(0).argmax())].id})"
        )
    print(f"oracle / random: median {statistics.median(vs_random):.2f} (min {min(vs_random):.2f})")
    print(
        f"oracle / best single offer: median {statistics.median(vs_best):.2f} "
        f"(min {min(vs_best):.2f})"
    )


if __name__ == "__main__":
    main()
