"""offerloop's learners against Vowpal Wabbit's contextual bandit (issue 4).

    .venv/bin/python bench/learners_vs_vw.py [--players 2000] [--days 14] [--seed 7]

The simulated game runs with uniform random decisions (the day-one policy) for 14 days. After
3, 7 and 14 days, every learner (and VW `--cb_explore_adf` with action-dependent features) is
trained on the logged decisions whose reward is final, then judged on held-out traffic: the
decisions of the last day, which no model trained on, scored with the simulator's ground
truth (expected revenue of the offer each model would pick greedily for each player).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from offerloop import ManualClock, Offerloop, load_settings
from offerloop.features import Encoder
from offerloop.pipeline import LEARNERS, make_policy
from offerloop.policies import LoggedData
from offerloop.serving import InProcessClient, create_app
from offerloop.sim import GameSimulation, World
from offerloop.sim._demo import DEMO_START
from offerloop.training import build_training_set

RESULTS = Path(__file__).parent / "results"
DAY = 86400.0


def vw_lines(row: dict[str, object], offers: list, label: tuple[int, float, float] | None) -> str:
    shared = " ".join(
        f"{k}={v}" if isinstance(v, str) else f"{k}:{float(v):.6g}"  # type: ignore[arg-type]
        for k, v in row.items()
    )
    lines = [f"shared |s {shared}"]
    for i, o in enumerate(offers):
        lab = ""
        if label is not None and label[0] == i:
            lab = f"0:{-label[1]:.6g}:{label[2]:.6g} "
        lines.append(f"{lab}|a b={o.bundle.id} m={o.message.id} price:{o.price}")
    return "\n".join(lines)


def train_vw(data: LoggedData, offers: list) -> object:
    import vowpalwabbit

    vw = vowpalwabbit.Workspace("--cb_explore_adf --epsilon 0.1 -q sa --quiet --passes 1")
    index = {o.id: i for i, o in enumerate(offers)}
    for row, offer, r, p in zip(
        data.features, data.offers, data.rewards, data.propensities, strict=True
    ):
        vw.learn(vw_lines(dict(row), offers, (index[offer], float(r), float(p))))
    return vw


def vw_greedy(vw: object, rows: list[dict[str, object]], offers: list) -> np.ndarray:
    return np.array(
        [
            int(np.argmax(vw.predict(vw_lines(r, offers, None))))  # type: ignore[attr-defined]
            for r in rows
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--players", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    checkpoints = [d for d in (3, 7, 14) if d <= args.days]
    with tempfile.TemporaryDirectory() as tmp:
        clock = ManualClock(DEMO_START)
        system = Offerloop(load_settings(env={}, data_dir=tmp, decision_seed=args.seed), clock)
        system.bootstrap()
        c = system.campaign(None)
        world = World(c, seed=args.seed)
        snapshots: dict[int, LoggedData] = {}
        with InProcessClient(create_app(system)) as client:
            sim = GameSimulation(client, world, clock, args.players, c.id)
            sim.record = True
            sim.seed_history()
            t = time.perf_counter()
            for day in range(args.days + 1):  # one extra day: the held-out traffic
                sim.play_day(day)
                if day + 1 in checkpoints:
                    snapshots[day + 1] = build_training_set(
                        system.backend, c.id, clock.now(), system.window_seconds
                    ).data
            print(f"simulated {args.days + 1} days in {time.perf_counter() - t:.0f} s")
        held = system.backend.decisions(c.id, DEMO_START + args.days * DAY, 1e18)
        rows = [dict(d.features) for d in held]
        expected = np.array([sim.observations[d.decision_id] for d in held])
        encoder = Encoder.of(system.features)
        settings = system.settings
        system.close()
    n = np.arange(len(rows))
    table = {"random": {}, "oracle": {}}
    for d in checkpoints:
        table["random"][d] = float(expected.mean())
        table["oracle"][d] = float(expected.max(axis=1).mean())
    train_time: dict[str, list[float]] = {}
    for d in checkpoints:
        data = snapshots[d]
        for learner in LEARNERS:
            policy = make_policy(learner, c, encoder, settings)
            t = time.perf_counter()
            policy.fit(data)
            train_time.setdefault(learner, []).append(time.perf_counter() - t)
            pick = policy.model.predict_batch(rows).argmax(axis=1)
            table.setdefault(learner, {})[d] = float(expected[n, pick].mean())
        t = time.perf_counter()
        vw = train_vw(data, list(c.offers))
        train_time.setdefault("vw", []).append(time.perf_counter() - t)
        table.setdefault("vw", {})[d] = float(
            expected[n, vw_greedy(vw, rows, list(c.offers))].mean()
        )
        print(
            f"day {d}: {len(data)} training decisions; "
            + ", ".join(f"{k} {v[d]:.3f}" for k, v in table.items())
        )
    best = max(LEARNERS, key=lambda k: table[k][checkpoints[-1]])
    oracle = table["oracle"][checkpoints[-1]]
    print(
        f"best learner at day {checkpoints[-1]}: {best} "
        f"{table[best][checkpoints[-1]]:.3f} = {table[best][checkpoints[-1]] / oracle:.0%} "
        f"of the oracle; VW {table['vw'][checkpoints[-1]] / oracle:.0%}"
    )
    print(
        "training time (median s): "
        + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in train_time.items())
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "learners_vs_vw.json").write_text(
        json.dumps(
            {
                "revenue_per_decision": table,
                "train_seconds": train_time,
                "held_out_decisions": len(rows),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
