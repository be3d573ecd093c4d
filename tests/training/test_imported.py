"""Logged bandit data from another system: CSV import with hashed categorical features, then
training and evaluation like native logs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from offerloop import InvalidInput
from offerloop.training import ImportSpec, evaluate_all, import_log, load_log, split_by_time
from tests.cli.test_cli import run
from tests.helpers import logged_data

SPEC = ImportSpec(
    "time",
    "arm",
    "revenue",
    "p",
    numeric=["level"],
    categorical=["country"],
    hashed=["device_id"],
    hash_buckets=8,
)


def _write_csv(path: Path, n: int = 1500, bad_row: int | None = None) -> None:
    data, _, _ = logged_data(n, seed=9)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "arm", "revenue", "p", "level", "country", "device_id"])
        for i in range(n):
            p = 0.0 if i == bad_row else data.propensities[i]
            w.writerow(
                [
                    1_700_000_000 + i * 60,
                    data.offers[i],
                    data.rewards[i],
                    p,
                    data.features[i]["level"],
                    data.features[i]["country"],
                    f"device-{i % 97}",
                ]
            )


def test_import_hashes_strings_and_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "old_system.csv"
    _write_csv(src)
    log = import_log(tmp_path, "legacy", src, SPEC)
    assert len(log.data) == 1500
    assert log.encoder.feature_names == ["level", "country", "device_id"]
    assert {r["device_id"] for r in log.data.features} <= {f"h{k}" for k in range(8)}
    again = load_log(tmp_path, "legacy")
    assert list(again.data.rewards) == list(log.data.rewards)
    with pytest.raises(Exception, match="exists"):
        import_log(tmp_path, "legacy", src, SPEC)


def test_bad_rows_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    _write_csv(src, n=50, bad_row=7)
    with pytest.raises(InvalidInput, match=r"row 7: p: 0\.0 is not in \(0, 1\]"):
        import_log(tmp_path, "bad", src, SPEC)
    assert not (tmp_path / "logs" / "bad.json").exists()
    with pytest.raises(InvalidInput, match="arm2: no such column"):
        import_log(tmp_path, "bad", src, ImportSpec("time", "arm2", "revenue", "p"))


def test_learners_train_and_are_judged_on_imported_logs(tmp_path: Path) -> None:
    from offerloop.policies import EpsilonGreedy, GBTRevenue, RandomPolicy

    src = tmp_path / "old.csv"
    _write_csv(src, n=3000)
    log = import_log(tmp_path, "legacy", src, SPEC)
    train, valid = split_by_time(log.data)
    spec = log.encoder.spec()
    policy = EpsilonGreedy(log.actions, GBTRevenue(log.actions, encoder=spec), 0.1).fit(train)
    judge = GBTRevenue(log.actions, encoder=spec).fit(train)
    learned = evaluate_all(policy, valid, judge)
    uniform = evaluate_all(RandomPolicy(log.actions), valid, judge)
    assert set(learned) == {"ips", "snips", "dr"}
    assert learned["dr"].n == len(valid) == 750
    assert learned["dr"].ess < uniform["dr"].ess == 750  # uniform logging: weights all 1
    # the simulator knows the truth for these rows (same seed, same order; fixed: no flakes)
    _, expected, _ = logged_data(3000, seed=9)
    truth = float((policy.act_batch(valid.features) * expected[2250:]).sum(axis=1).mean())
    assert learned["dr"].lower <= truth <= learned["dr"].upper


COLUMNS = (
    "--ts-col",
    "time",
    "--action-col",
    "arm",
    "--reward-col",
    "revenue",
    "--propensity-col",
    "p",
)


def _cli_import(tmp_path: Path, n: int, *extra: str) -> tuple[str, ...]:
    """Write a CSV of ``n`` decisions, import it as log 'legacy'; returns --data-dir args."""
    src = tmp_path / "old.csv"
    _write_csv(src, n=n)
    d = ("--data-dir", str(tmp_path / "data"))
    r = run("logs", "import", str(src), "--name", "legacy", *COLUMNS, *extra, *d, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"imported {n} decisions" in r.stdout
    return d


def test_cli_import_and_evaluate(tmp_path: Path) -> None:
    d = _cli_import(
        tmp_path, 800, "--numeric", "level", "--categorical", "country", "--hashed", "device_id"
    )
    r = run("evaluate", "--policy", "linear", "--logs", "legacy", *d, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "snips" in r.stdout
    assert "dr" in r.stdout
    r = run("evaluate", "--policy", "random", "--logs", "nope", *d, cwd=tmp_path)
    assert r.returncode == 1
    assert "no imported log 'nope'" in r.stderr


def test_cli_evaluates_per_decision_probabilities_from_a_file(tmp_path: Path) -> None:
    d = _cli_import(tmp_path, 200)
    probs = tmp_path / "probs.csv"
    probs.write_text("probability\n" + "\n".join(["0.5"] * 200) + "\n")
    r = run("evaluate", "--probabilities", str(probs), "--logs", "legacy", *d, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "snips" in r.stdout
    probs.write_text("probability\n0.5\n")
    r = run("evaluate", "--probabilities", str(probs), "--logs", "legacy", *d, cwd=tmp_path)
    assert r.returncode == 2
    assert "needs 200 probabilities" in r.stderr
