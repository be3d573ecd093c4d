"""Logged bandit data from another system: CSV import with hashed categorical features, then
training and evaluation like native logs."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from offerloop import InvalidInput
from offerloop.training import ImportSpec, estimate_all, import_log, load_log, split_by_time
from tests.cli.runner import run
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
    assert not (tmp_path / "logs" / "bad").exists()
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").iterdir())
    with pytest.raises(InvalidInput, match=r"no action column matches 'arm2'.*did you mean arm"):
        import_log(tmp_path, "bad", src, ImportSpec("time", "arm2", "revenue", "p"))


def test_globs_unlimited_categories_and_columnar_storage(tmp_path: Path) -> None:
    n = 3000
    src = tmp_path / "wide.csv"
    with src.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["ts", "action", "reward", "propensity", "user", "tier", *[f"f_{j}" for j in range(30)]]
        )
        for i in range(n):
            w.writerow(
                [
                    i,
                    f"a{i % 7}",
                    float(i % 50 == 0),
                    1 / 7,
                    f"u{i}",
                    f"t{i % 3}",
                    *[(i * j) % 11 for j in range(30)],
                ]
            )
    spec = ImportSpec(
        "ts",
        "action",
        "reward",
        "propensity",
        numeric=["f_*"],
        categorical=["user", "tier"],
        max_categories=100,
    )
    log = import_log(tmp_path, "wide", src, spec)
    assert log.encoder.feature_names[:30] == [f"f_{j}" for j in range(30)]
    assert any("user: 3000 values" in note and "hashed into 100" in note for note in log.notes)
    assert any(note == "tier: 3 values, dictionary-encoded" for note in log.notes)
    assert {r["user"] for r in log.data.features} <= {f"h{k}" for k in range(100)}
    stored = tmp_path / "logs" / "wide" / "rows.parquet"
    assert stored.stat().st_size < src.stat().st_size  # columnar and compressed, not JSON
    with pytest.raises(InvalidInput, match=r"no numeric column matches 'g_\*'"):
        import_log(
            tmp_path,
            "wide2",
            src,
            ImportSpec("ts", "action", "reward", "propensity", numeric=["g_*"]),
        )
    # a tampered file is refused on load, never read silently
    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(InvalidInput, match="sha256"):
        load_log(tmp_path, "wide")


def test_learners_train_and_are_judged_on_imported_logs(tmp_path: Path) -> None:
    from offerloop.policies import EpsilonGreedy, GBTRevenue, RandomPolicy

    src = tmp_path / "old.csv"
    _write_csv(src, n=3000)
    log = import_log(tmp_path, "legacy", src, SPEC)
    train, valid = split_by_time(log.data)
    spec = log.encoder.spec()
    policy = EpsilonGreedy(log.actions, GBTRevenue(log.actions, encoder=spec), 0.1).fit(train)
    judge = GBTRevenue(log.actions, encoder=spec).fit(train)
    learned = estimate_all(policy, valid, judge)
    uniform = estimate_all(RandomPolicy(log.actions), valid, judge)
    assert set(learned) == {"dm", "ips", "snips", "dr", "sndr", "switch_dr"}
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
    r = run("evaluate", "--policy", "linear", "--folds", "2", "--logs", "legacy", *d, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "linear on legacy: 800 decisions" in r.stdout
    for row in ("dm", "ips", "snips", "dr", "sndr", "switch_dr"):  # the table's rows
        assert re.search(rf"^\S*\s*{row}\s", r.stdout, flags=re.M), (row, r.stdout)
    doc = json.loads(
        run(
            "evaluate",
            "--policy",
            "linear",
            "--folds",
            "2",
            "--logs",
            "legacy",
            "--json",
            *d,
            cwd=tmp_path,
        ).stdout
    )
    assert doc["rows"] == 800
    for e in doc["estimates"].values():
        assert e["lower"] <= e["value"] <= e["upper"]
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


def test_cli_full_distributions_give_every_estimator_as_json(tmp_path: Path) -> None:
    import json

    d = _cli_import(tmp_path, 600, "--numeric", "level", "--categorical", "country")
    log = load_log(tmp_path / "data", "legacy")
    probs = tmp_path / "uniform.csv"
    k = len(log.actions)
    with probs.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(log.actions)
        for _ in range(600):
            w.writerow([1 / k] * k)
    r = run(
        "evaluate", "--probabilities", str(probs), "--logs", "legacy", "--json", *d, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc["estimates"]) == {"dm", "ips", "snips", "dr", "sndr", "switch_dr"}
    for e in doc["estimates"].values():
        assert e["lower"] <= e["value"] <= e["upper"]
        assert {"ess", "matched", "events", "usable", "warnings"} <= set(e)
    # paired against a learner on the same rows, in a table without "-0"
    r = run(
        "evaluate",
        "--policy",
        "linear",
        "--baseline",
        f"file:{probs}",
        "--logs",
        "legacy",
        "--folds",
        "3",
        *d,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "paired doubly robust difference linear − file:" in r.stdout
    assert "cross-fitted over 3 time blocks" in r.stdout
    assert "-0 " not in r.stdout
    assert "-0.0000" not in r.stdout
    # a file without the offers' columns or a 'probability' column: one line, exit 2
    bad = tmp_path / "bad.csv"
    bad.write_text("x\n" + "0.5\n" * 600)
    r = run("evaluate", "--probabilities", str(bad), "--logs", "legacy", *d, cwd=tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "one column per offer" in r.stderr
