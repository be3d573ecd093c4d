"""The CLI: commands change a data directory; user errors are one line and non-zero.

Commands run in-process (``tests.cli.runner.run``); one smoke test runs the real console
entry point as a process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.runner import Result, run, run_process


def test_the_entry_point_runs_as_a_process_and_fails_in_one_line(tmp_path: Path) -> None:
    p = run_process("--help", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Usage: offerloop" in p.stdout
    assert "retrain" in p.stdout
    bad = run_process("release", "linear-99", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert bad.returncode == 1
    assert "does not exist" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_deploy_release_rollback_history(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path / "data")]
    st = run("status", *d, cwd=tmp_path)
    assert st.returncode == 0, st.stderr
    assert "released random-1; canary -; shadow rules-2" in st.stdout
    r = run("release", "rules-2", "--reason", "try it", "--actor", "alice", *d, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "released rules-2" in run("status", *d, cwd=tmp_path).stdout
    r = run("deploy", "random-1", "--shadow", *d, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run("rollback", "--reason", "oops", *d, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "random-1 released" in r.stdout
    h = run("history", *d, cwd=tmp_path)
    assert "alice" in h.stdout
    assert "try it" in h.stdout
    assert "oops" in h.stdout
    at = run("history", "--at", "2000-01-01T00:00:00Z", *d, cwd=tmp_path)
    assert "no version was released then" in at.stdout
    models = run("models", "list", *d, cwd=tmp_path)
    assert "random-1" in models.stdout
    assert "rules-2" in models.stdout


def _one_line_error(p: Result, code: int, text: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines, p.stderr
    assert text in " ".join(lines), p.stderr


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path / "data")]
    _one_line_error(run("release", "linear-99", *d, cwd=tmp_path), 1, "does not exist")
    _one_line_error(run("rollback", *d, cwd=tmp_path), 1, "no previous release")
    _one_line_error(run("retrain", *d, cwd=tmp_path), 1, "retraining needs")
    _one_line_error(run("history", "--at", "yesterday", *d, cwd=tmp_path), 2, "RFC 3339")
    bad = tmp_path / "bad.toml"
    bad.write_text('id = "c"\n[[bundles]]\nid = "b"\nproducts = {x = 1}\nprice = 0\n')
    _one_line_error(
        run("check-campaign", str(bad), cwd=tmp_path), 2, "bad.toml: bundles[0].price: must be > 0"
    )
    (tmp_path / "offerloop.toml").write_text("epsilon = 7\n")
    _one_line_error(run("status", *d, cwd=tmp_path), 2, "epsilon")


def test_check_campaign_accepts_the_default(tmp_path: Path) -> None:
    from offerloop.campaigns import default_campaign_path

    p = run("check-campaign", str(default_campaign_path()), cwd=tmp_path)
    assert p.returncode == 0
    assert "6 bundles × 4 messages = 24 offers" in p.stdout
    import json

    from offerloop.serving._api import OfferOut

    doc = json.loads(
        run("check-campaign", str(default_campaign_path()), "--json", cwd=tmp_path).stdout
    )
    assert len(doc["offers"]) == 24
    for offer in doc["offers"]:  # the shape GET /v1/campaigns/{id} answers
        assert OfferOut.model_validate(offer).model_dump() == offer


def test_pipeline_schedule_runs_on_a_cron_or_interval_and_names_bad_ones(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path / "data")]
    _one_line_error(
        run("pipeline", "schedule", "--cron", "0 25 * * *", *d, cwd=tmp_path),
        2,
        "the hour field '25' is not valid",
    )
    _one_line_error(
        run(
            "pipeline", "schedule", "--cron", "@daily", "--timezone", "Mars/Base", *d, cwd=tmp_path
        ),
        2,
        "'Mars/Base' is not an IANA time zone",
    )
    p = run(
        "pipeline", "schedule", "--cron", "@daily", "--timezone", "Europe/Berlin", "--runs", "1",
        "--now", *d, cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "schedule '@daily' (Europe/Berlin): first run at" in p.stdout
    _one_line_error(
        run("pipeline", "schedule", "--every", "1h", "--cron", "* * * * *", *d, cwd=tmp_path),
        2,
        "either --every or --cron",
    )
    p = run("pipeline", "schedule", "--every", "1s", "--runs", "2", "--now", *d, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "schedule '1s': first run at" in p.stdout
    assert p.stdout.count(": finished") == 2
    listed = run("pipeline", "runs", *d, cwd=tmp_path)
    assert "run-000001-" in listed.stdout
    assert "run-000003-" in listed.stdout


@pytest.mark.needs("postgres", "redis")
def test_features_rebuild_refills_redis_from_postgresql(tmp_path: Path) -> None:
    from offerloop import Offerloop, load_settings
    from offerloop.events import EventIn
    from tests.conftest import PG_URL, REDIS_URL, _drop, unique_name

    name = unique_name("cli")
    shared = {
        "database_url": PG_URL,
        "database_schema": name,
        "redis_url": REDIS_URL,
        "redis_prefix": f"{name}:",
    }
    settings = load_settings(env={}, data_dir=str(tmp_path / "d"), **shared)
    system = Offerloop(settings)
    try:
        system.bootstrap()
        system.player_features.warm()
        system.ingest(
            [
                EventIn(
                    event_id=f"e{i}",
                    player_id="p1",
                    type="purchase",
                    ts="2026-11-26T10:00:00Z",
                    properties={"amount": 2.0},
                )
                for i in range(3)
            ]
        )
        assert system.player_features.online.read("p1", system.clock.now())["purchases_total"] == 3
        system.player_features.online.store.clear()  # Redis lost its state (a flush, a new cluster)
        assert system.player_features.online.store.get("p1") is None
        env = {f"OFFERLOOP_{k.upper()}": v for k, v in shared.items()}
        p = run("features", "rebuild", "--data-dir", str(tmp_path / "d"), cwd=tmp_path, env=env)
        assert p.returncode == 0, p.stderr
        assert "online state rebuilt from 3 events" in p.stdout
        assert system.player_features.online.read("p1", system.clock.now())["purchases_total"] == 3
    finally:
        system.close()
        _drop(settings)


def test_settings_never_prints_secrets(tmp_path: Path) -> None:
    """Finding 10 of issue 13: `offerloop settings` printed the admin token and the database
    password in clear."""
    env = {
        "OFFERLOOP_ADMIN_TOKEN": "tok-3f9a",
        "OFFERLOOP_DECISION_TOKEN_SECRET": "hmac-77c1",
        "OFFERLOOP_DATABASE_URL": "postgresql://app:pw-51e2@db.example:5432/prod",
        "OFFERLOOP_REDIS_URL": "redis://:pw-9d0b@cache.example:6379/0",
    }
    p = run("settings", "--data-dir", str(tmp_path / "d"), cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    for secret in ("tok-3f9a", "hmac-77c1", "pw-51e2", "pw-9d0b"):
        assert secret not in p.stdout
    assert "admin_token = '***'" in p.stdout
    assert "postgresql://app:***@db.example:5432/prod" in p.stdout
    assert "decision_token_secret = '***'" in p.stdout


def test_version_short_help_and_completion(tmp_path: Path) -> None:
    from offerloop import __version__

    v = run("--version", cwd=tmp_path)
    assert (v.returncode, v.stdout.strip()) == (0, f"offerloop {__version__}")
    h = run("status", "-h", cwd=tmp_path)
    assert h.returncode == 0
    assert "Usage: offerloop status" in h.stdout
    # what bash's completion asks (the script --install-completion installs does this)
    words = {"_OFFERLOOP_COMPLETE": "complete_bash", "COMP_WORDS": "offerloop models l"}
    c = run_process(cwd=tmp_path, env={**words, "COMP_CWORD": "2"})
    assert c.returncode == 0, c.stderr
    assert c.stdout.split() == ["list"]


# every command that lists or reports state, and how to call it
LISTINGS = {
    "status": [],
    "history": [],
    "models list": [],
    "pipeline runs": [],
    "features list": [],
    "features show": ["p1"],
    "settings": [],
    "quarantine": [],
    "check-campaign": ["CAMPAIGN"],
    "models show": ["random-1"],
    "features skew": [],
}
# the commands that change things or run (they say what they did in a line, or run a server)
ACTIONS = {
    "serve",
    "report",
    "retrain",
    "deploy",
    "release",
    "canary",
    "rollback",
    "undeploy",
    "features rebuild",
    "features backfill",
    "pipeline run",
    "pipeline schedule",
    "logs import",
}


def _commands() -> dict[str, bool]:
    """Every command of the CLI, and whether it takes --json."""
    from typer.main import get_command

    from offerloop.cli import app

    def walk(cmd: Any, prefix: str) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for name, sub in getattr(cmd, "commands", {}).items():
            full = f"{prefix} {name}".strip()
            if getattr(sub, "commands", None):
                out |= walk(sub, full)
            else:
                out[full] = any("--json" in p.opts for p in sub.params)
        return out

    return walk(get_command(app), "")


def test_every_command_that_reports_takes_json() -> None:
    commands = _commands()
    without = {c for c, has in commands.items() if not has}
    assert without == ACTIONS, without ^ ACTIONS
    assert set(LISTINGS) <= set(commands)


def test_every_listing_command_has_json_that_parses(tmp_path: Path) -> None:
    import json

    from offerloop.campaigns import default_campaign_path

    d = ["--data-dir", str(tmp_path / "data")]
    run("release", "rules-2", *d, cwd=tmp_path)  # something in the history
    for command, args in LISTINGS.items():
        argv = [
            *command.split(),
            *(str(default_campaign_path()) if a == "CAMPAIGN" else a for a in args),
            "--json",
            *d,
        ]
        r = run(*argv, cwd=tmp_path)
        assert r.returncode == 0, (command, r.stderr)
        assert json.loads(r.stdout) is not None, command
    status = json.loads(run("status", "--json", *d, cwd=tmp_path).stdout)
    assert status["released"] == "rules-2"
    assert status["shadows"] == []
    history = json.loads(run("history", "--json", *d, cwd=tmp_path).stdout)
    assert [t["action"] for t in history["transitions"]][-2:] == ["release", "release"]
    assert history["transitions"][-1]["ts"].endswith("Z")  # full RFC 3339, not cut
    models = json.loads(run("models", "list", "--json", *d, cwd=tmp_path).stdout)
    assert {m["version"]: m["mode"] for m in models} == {"random-1": "", "rules-2": "released"}


def test_no_op_and_destructive_commands_say_so(tmp_path: Path) -> None:
    import json

    d = ["--data-dir", str(tmp_path / "data")]
    r = run("undeploy", "random-1", *d, cwd=tmp_path)  # released: refused
    assert r.returncode == 1
    assert "is released" in r.stderr
    assert run("undeploy", "rules-2", *d, cwd=tmp_path).returncode == 0  # the shadow
    r = run("undeploy", "rules-2", *d, cwd=tmp_path)  # not deployed any more
    _one_line_error(r, 1, "rules-2 is not deployed")
    assert run("canary", "rules-2", "--share", "0.1", *d, cwd=tmp_path).returncode == 0
    from offerloop import Offerloop, load_settings
    from offerloop.policies import RandomPolicy

    system = Offerloop(load_settings(env={}, data_dir=str(tmp_path / "data")))
    try:
        c = system.campaign(None)
        other = system.registry.register(c.id, RandomPolicy(c.offer_ids)).version
    finally:
        system.close()
    r = run("canary", other, "--share", "0.2", *d, cwd=tmp_path)
    _one_line_error(r, 1, "rules-2 is the canary now; pass --replace")
    r = run("canary", other, "--share", "0.2", "--replace", *d, cwd=tmp_path)
    assert r.returncode == 0
    assert "replacing rules-2" in r.stdout
    run("release", other, *d, cwd=tmp_path)
    before = json.loads(run("history", "--json", *d, cwd=tmp_path).stdout)
    r = run("rollback", "--dry-run", *d, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"{other} out, random-1 released (dry run)" in r.stdout
    assert json.loads(run("history", "--json", *d, cwd=tmp_path).stdout) == before


def test_report_and_skew_take_dates(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path / "data")]
    out = tmp_path / "r.html"
    r = run(
        "report",
        "--out",
        str(out),
        "--start",
        "2026-03-01",
        "--end",
        "2026-03-02",
        *d,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert 'data-start="2026-03-01T00:00:00.000Z"' in page
    assert 'data-end="2026-03-03T00:00:00.000Z"' in page  # the end date is included
    _one_line_error(run("report", "--start", "yesterday", *d, cwd=tmp_path), 2, "--start")
    skew = run("features", "skew", "--since", "2026-03-01", "--json", *d, cwd=tmp_path)
    assert skew.returncode == 0, skew.stderr
