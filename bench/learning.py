"""How much of the oracle offerloop earns as it learns, against two online bandits (issue 15).

    .venv/bin/python bench/learning.py [--seeds 1 2 3 4 5] [--players 2000] [--days 14]
                                       [--change-day 7] [--quick]

For every seed, and for a world without and with a change of tastes on ``--change-day``
(sim.TasteChange: a segment's favourite bundle and message move), the same simulated players
play ``--days`` days against:

* **offerloop**, a real `offerloop serve` process on a manual clock, driven through its HTTP
  API only (sim.Backtest: decisions, events, POST /v1/admin/clock, POST
  /v1/admin/pipeline/run 4 times a simulated day), with the demo's settings;
* **Vowpal Wabbit** `--cb_explore_adf` (action-dependent features, `-q sa`), `--cb_type dr`
  and `--cb_type mtr`, learning online from every decision once its reward is final;
* **Thompson sampling** per observable bucket (spender tier × recent purchase × platform),
  a Beta posterior of the purchase probability of every offer, updated the same way.

The baselines see the same event stream the service gets (the game's events and purchase
answers) and compute their features from it. Each prints expected revenue per decision (the
simulator's ground truth of the offer shown) divided by the oracle's (the best offer for that
player at that moment), over all days, the last 3 days and, with the change, the days after.
Results go to bench/results/learning.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from offerloop._clock import ManualClock, format_ts, parse_rfc3339
from offerloop.campaigns import default_campaign_path, load_campaign
from offerloop.sim import DayStats, GameSimulation, TasteChange, World
from offerloop.sim._demo import DEMO_SETTINGS, DEMO_START
from offerloop.sim._remote import Backtest
from offerloop.sim._world import DAY
from offerloop.testing import wait_healthy

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
WINDOW = 4 * 3600.0  # rewards are final 4 h after the decision (the demo's attribution window)
LEARNED = ("linear", "gbt", "purchase_gbt", "thompson")


# -- offerloop through HTTP ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def run_offerloop(seed: int, change: int, players: int, days: int, log: Path) -> list[DayStats]:
    port, token = _free_port(), "bench-learning"
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "OFFERLOOP_ADMIN_TOKEN": token,
            "OFFERLOOP_DECISION_SEED": str(seed),
            **{f"OFFERLOOP_{k.upper()}": _env(v) for k, v in DEMO_SETTINGS.items()},
        }
        cmd = [
            sys.executable,
            "-m",
            "offerloop",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            tmp,
            "--clock",
            f"manual:{format_ts(DEMO_START)}",
        ]
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            base = f"http://127.0.0.1:{port}"
            try:
                wait_healthy(proc, base, 120)
            except RuntimeError as exc:
                raise RuntimeError(f"offerloop serve did not start ({exc}); see {log}") from exc
            world = _world(seed, change)
            return Backtest(base, world, DEMO_START, players, days, token=token).run()
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _world(seed: int, change: int) -> World:
    c = load_campaign(default_campaign_path())
    return World(
        c, seed=seed, change=TasteChange(DEMO_START + change * DAY) if change >= 0 else None
    )


# -- the baselines: a service of their own, fed the same requests ---------------------------------
class _Player:
    __slots__ = ("country", "level", "platform", "purchases", "sessions")

    def __init__(self) -> None:
        self.platform, self.country, self.level = "", "", 1
        self.purchases: list[tuple[float, float]] = []
        self.sessions: list[float] = []


class _Response:
    def __init__(self, doc: Any) -> None:
        self.doc = doc

    def raise_for_status(self) -> None:
        return None

    def json(self) -> Any:
        return self.doc


class BanditService:
    """What the game talks to, for an online bandit: events update per-player state (the
    features), decide asks the bandit, and every decision is learned from once its reward is
    final (``WINDOW`` after it)."""

    name = "bandit"

    def __init__(self, world: World, clock: ManualClock, seed: int) -> None:
        self.offers = world.campaign.offers
        self.clock = clock
        self.rng = np.random.default_rng(seed)
        self.players: dict[str, _Player] = defaultdict(_Player)
        self.pending: list[tuple[float, str, Any, int, float]] = []  # ts, id, x, action, p
        self.rewards: dict[str, float] = {}
        self.n = 0

    def post(self, url: str, *, json: Any) -> _Response:
        if url == "/v1/events":
            for e in json["events"]:
                self._event(e)
            self._learn_matured()
            return _Response({"accepted": len(json["events"])})
        self._learn_matured()
        pid = json["player_id"]
        x = self.features(self.players[pid], self.clock.now())
        probs = self.pmf(x)
        a = int(self.rng.choice(len(probs), p=probs))
        self.n += 1
        did = f"d{self.n}"
        self.pending.append((self.clock.now(), did, x, a, float(probs[a])))
        o = self.offers[a]
        return _Response(
            {"decision_id": did, "offer_id": o.id, "price": o.price, "model_version": self.name}
        )

    def _event(self, e: dict[str, Any]) -> None:
        p, props, ts = self.players[e["player_id"]], e["properties"], parse_rfc3339(e["ts"])
        if e["type"] == "player_profile":
            p.platform, p.country = props["platform"], props["country"]
        elif e["type"] == "level_up":
            p.level = int(props["level"])
        elif e["type"] == "session_start":
            p.sessions.append(ts)
        elif e["type"] == "purchase":
            p.purchases.append((ts, float(props["amount"])))
            if "decision_id" in props:
                self.rewards[props["decision_id"]] = float(props["amount"])

    def _learn_matured(self) -> None:
        now = self.clock.now()
        while self.pending and self.pending[0][0] + WINDOW <= now:
            _, did, x, a, p = self.pending.pop(0)
            self.learn(x, a, p, self.rewards.pop(did, 0.0))

    @staticmethod
    def features(p: _Player, now: float) -> dict[str, Any]:
        amounts = [a for _, a in p.purchases]
        last = max((t for t, _ in p.purchases), default=None)
        month = [a for t, a in p.purchases if t > now - 30 * DAY]
        return {
            "platform": p.platform,
            "country": p.country,
            "level": p.level / 50,
            "purchases_total": len(amounts),
            "spend_total": sum(amounts) / 5,
            "mean_purchase": (sum(amounts) / len(amounts) / 5) if amounts else 0.0,
            "max_purchase_30d": max(month, default=0.0) / 5,
            "purchases_7d": sum(1 for t, _ in p.purchases if t > now - 7 * DAY),
            "hours_since_purchase": ((now - last) / 3600 if last is not None else 8760) / 10,
            "sessions_7d": sum(1 for t in p.sessions if t > now - 7 * DAY) / 3,
        }

    def pmf(self, x: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def learn(self, x: dict[str, Any], a: int, p: float, reward: float) -> None:
        raise NotImplementedError


class VWService(BanditService):
    def __init__(self, world: World, clock: ManualClock, seed: int, cb_type: str) -> None:
        super().__init__(world, clock, seed)
        import vowpalwabbit

        self.name = f"vw-{cb_type}"
        self.vw = vowpalwabbit.Workspace(
            f"--cb_explore_adf --cb_type {cb_type} -q sa --quiet --random_seed {seed}"
        )
        self.actions = [
            f"|a b={o.bundle.id} m={o.message.id} price:{o.price} logprice:{math.log(o.price):.4f}"
            for o in self.offers
        ]

    def _text(self, x: dict[str, Any], label: tuple[int, float, float] | None) -> str:
        shared = " ".join(
            f"{k}={v}" if isinstance(v, str) else f"{k}:{float(v):.5g}" for k, v in x.items()
        )
        lines = [f"shared |s {shared}"]
        for i, act in enumerate(self.actions):
            lab = (
                f"0:{-label[1]:.6g}:{label[2]:.6g} " if label is not None and label[0] == i else ""
            )
            lines.append(lab + act)
        return "\n".join(lines)

    def pmf(self, x: dict[str, Any]) -> np.ndarray:
        probs = np.asarray(self.vw.predict(self._text(x, None)), dtype=np.float64)
        return probs / probs.sum()

    def learn(self, x: dict[str, Any], a: int, p: float, reward: float) -> None:
        self.vw.learn(self._text(x, (a, reward, p)))


class ThompsonService(BanditService):
    """Beta(1 + purchases, 1 + shows - purchases) per (bucket, offer); the offer with the
    highest sampled purchase probability × price is shown."""

    name = "thompson"

    def __init__(self, world: World, clock: ManualClock, seed: int) -> None:
        super().__init__(world, clock, seed)
        self.prices = np.array([o.price for o in self.offers])
        self.wins: dict[tuple[Any, ...], np.ndarray] = defaultdict(
            lambda: np.ones(len(self.offers))
        )
        self.losses: dict[tuple[Any, ...], np.ndarray] = defaultdict(
            lambda: np.ones(len(self.offers))
        )

    @staticmethod
    def bucket(x: dict[str, Any]) -> tuple[Any, ...]:
        spend = x["spend_total"] * 5
        tier = 0 if spend <= 0 else 1 if spend <= 20 else 2 if spend <= 60 else 3
        return (tier, x["hours_since_purchase"] * 10 < 36, x["platform"])

    def pmf(self, x: dict[str, Any]) -> np.ndarray:
        b = self.bucket(x)
        theta = self.rng.beta(self.wins[b], self.losses[b])
        out = np.zeros(len(self.offers))
        out[int(np.argmax(theta * self.prices))] = 1.0
        return out

    def learn(self, x: dict[str, Any], a: int, p: float, reward: float) -> None:
        b = self.bucket(x)
        if reward > 0:
            self.wins[b][a] += 1
        else:
            self.losses[b][a] += 1


def run_baseline(kind: str, seed: int, change: int, players: int, days: int) -> list[DayStats]:
    """``kind``: vw-dr, vw-mtr or thompson."""
    world = _world(seed, change)
    clock = ManualClock(DEMO_START)
    service: BanditService = (
        ThompsonService(world, clock, seed)
        if kind == "thompson"
        else VWService(world, clock, seed, kind.removeprefix("vw-"))
    )
    sim = GameSimulation(service, world, clock, players, world.campaign.id)
    sim.seed_history()
    return [sim.play_day(d) for d in range(days)]


# -- scoring ---------------------------------------------------------------------------------------
def ratio(days: list[DayStats]) -> float:
    got = sum(d.expected_released for d in days)
    best = sum(d.expected_oracle for d in days)
    return got / best if best else 0.0


def learned_share(d: DayStats, day_one: str = "") -> float:
    """Share of the day's decisions served by a learned model (not random, rules, fixed or
    the day-one policy, ``day_one``: Thompson sampling before any data is no learned model)."""
    n = sum(k for v, k in d.served.items() if v.rsplit("-", 1)[0] in LEARNED and v != day_one)
    return n / d.decisions if d.decisions else 0.0


def summary(days: list[DayStats], change: int, service: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "all_days": round(ratio(days), 4),
        "last_3_days": round(ratio(days[-3:]), 4),
        "per_day": [round(ratio([d]), 4) for d in days],
    }
    # offerloop's first release is its day-one policy (the baselines learn from the start)
    day_one = days[0].released_versions[0] if service and days[0].released_versions else ""
    if any(learned_share(d, day_one) for d in days):
        out["learned_share_per_day"] = [round(learned_share(d, day_one), 3) for d in days]
    if change >= 0:
        out["after_change_days_1_3"] = round(ratio(days[change : change + 3]), 4)
        out["after_change_day_3"] = round(ratio(days[change + 2 : change + 3]), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--players", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--change-day", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="seed 1 only, 600 players, 5 days")
    ap.add_argument(
        "--worlds", nargs="+", default=["stable", "change"], choices=["stable", "change"]
    )
    ap.add_argument(
        "--arms",
        nargs="+",
        default=["offerloop", "baselines"],
        choices=["offerloop", "baselines"],
        help="run only offerloop or only the baselines (VW, Thompson), e.g. to rerun offerloop "
        "after a change against baselines measured before (they do not change with it)",
    )
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.players, args.days, args.change_day = [1], 600, 5, 2
    RESULTS.mkdir(exist_ok=True)
    runs: dict[str, dict[str, Any]] = {}
    t_all = time.perf_counter()
    changes = [c for w, c in (("stable", -1), ("change", args.change_day)) if w in args.worlds]
    for change in changes:
        world_name = "stable" if change < 0 else f"taste change on day {change}"
        for seed in args.seeds:
            row: dict[str, Any] = {}
            t = time.perf_counter()
            if "offerloop" in args.arms:
                log = RESULTS / f"learning_serve_{seed}_{max(change, 0)}.log"
                ol = run_offerloop(seed, change, args.players, args.days, log)
                seconds = {"seconds": round(time.perf_counter() - t)}
                row["offerloop"] = summary(ol, change, service=True) | seconds
            if "baselines" in args.arms:
                for cb in ("dr", "mtr"):
                    days = run_baseline(f"vw-{cb}", seed, change, args.players, args.days)
                    row[f"vw_{cb}"] = summary(days, change)
                row["vw_best"] = max((row["vw_dr"], row["vw_mtr"]), key=lambda r: r["all_days"])
                days = run_baseline("thompson", seed, change, args.players, args.days)
                row["thompson"] = summary(days, change)
            runs[f"{world_name}/seed {seed}"] = row
            if len(args.arms) < 2:
                print(f"{world_name:24s} seed {seed}: {json.dumps(row)}", flush=True)
                continue
            print(
                f"{world_name:24s} seed {seed}: offerloop {row['offerloop']['all_days']:.3f} "
                f"(last 3 days {row['offerloop']['last_3_days']:.3f}), VW best "
                f"{row['vw_best']['all_days']:.3f}, Thompson {row['thompson']['all_days']:.3f}"
                + (
                    f"; after the change, days 1-3: offerloop "
                    f"{row['offerloop']['after_change_days_1_3']:.3f}, day 3 "
                    f"{row['offerloop']['after_change_day_3']:.3f}"
                    if change >= 0
                    else ""
                ),
                flush=True,
            )
    medians = {
        arm: {
            k: round(statistics.median(r[arm][k] for r in runs.values()), 4)
            for k in ("all_days", "last_3_days")
        }
        for arm in ("offerloop", "vw_best", "thompson")
        if all(arm in r for r in runs.values())
    }
    ahead = sum(
        1
        for r in runs.values()
        if "offerloop" in r
        and "thompson" in r
        and r["offerloop"]["all_days"] > max(r["vw_best"]["all_days"], r["thompson"]["all_days"])
    )
    doc = {
        "command": "bench/learning.py " + " ".join(sys.argv[1:]),
        "players": args.players,
        "days": args.days,
        "seeds": args.seeds,
        "change_day": args.change_day,
        "runs": runs,
        "medians": medians,
        "offerloop_ahead_of_both": f"{ahead} of {len(runs)}",
        "seconds": round(time.perf_counter() - t_all),
    }
    name = "learning_quick.json" if args.quick else "learning.json"
    if not args.quick and (args.worlds != ["stable", "change"] or args.seeds != [1, 2, 3, 4, 5]):
        name = f"learning_{'_'.join(args.worlds)}_{'_'.join(map(str, args.seeds))}.json"
    if len(args.arms) < 2:
        name = name.replace(".json", f"_{args.arms[0]}.json")
    (RESULTS / name).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"medians": medians, "ahead_of_both": doc["offerloop_ahead_of_both"]}))


if __name__ == "__main__":
    main()
