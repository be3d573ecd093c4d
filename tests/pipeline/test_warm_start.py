"""Warm start: a log imported from an earlier system trains, registers and gates a first model
through `offerloop pipeline run` before offerloop has logged a single decision."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from offerloop import Offerloop, load_settings
from offerloop.features import Encoder, load_features
from tests.cli.runner import run
from tests.helpers import logged_data


def _export(path: Path, n: int) -> tuple[list[str], list[str]]:
    """An earlier system's log of the default campaign's offers, with offerloop's feature
    names as columns (and one it does not know)."""
    data, _, _ = logged_data(n, seed=21)
    spec = Encoder.of(load_features()).spec()
    names = [s["name"] for s in spec]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "offer", "revenue", "propensity", *names, "legacy_score"])
        for i in range(n):
            row = data.features[i]
            w.writerow(
                [
                    1_600_000_000 + 60 * i,
                    data.offers[i],
                    data.rewards[i],
                    data.propensities[i],
                    *[row.get(k, "") for k in names],
                    i % 5,
                ]
            )
    categorical = [s["name"] for s in spec if s["type"] == "category"]
    return [k for k in names if k not in categorical] + ["legacy_score"], categorical


def test_an_imported_log_trains_registers_and_gates_the_first_model(tmp_path: Path) -> None:
    src = tmp_path / "earlier_system.csv"
    numeric, categorical = _export(src, 4000)
    d = ("--data-dir", str(tmp_path / "data"))
    r = run(
        "logs", "import", str(src), "--name", "legacy", "--action-col", "offer",
        "--reward-col", "revenue", "--numeric", ",".join(numeric),
        "--categorical", ",".join(categorical), *d, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    env = {"OFFERLOOP_WARM_START_LOGS": "legacy", "OFFERLOOP_EXPLORATION": "softmax"}
    r = run("pipeline", "run", *d, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    retrain = doc["retrain"]
    assert retrain["rows"] == 4000, retrain  # all of them imported: offerloop logged nothing
    assert retrain["winner"]
    assert retrain["shadowed"], retrain  # a learner beats the random release on that evidence
    system = Offerloop(load_settings(env={}, data_dir=str(tmp_path / "data")))
    try:
        winner = system.registry.get(retrain["winner"])
        state = system.deployments.state(system.default_campaign)
        explorer = type(system.registry.load(winner.version)).__name__
    finally:
        system.close()
    assert winner.lineage["warm_start"][0].startswith("legacy: 4000 imported decisions")
    assert explorer == "Softmax"  # the exploration setting is respected
    # no canary was running: the winner, refitted on all rows, serves as the canary
    assert retrain["action"] == "canary"
    assert state.canary == retrain["deployed"] != winner.version
