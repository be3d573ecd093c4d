"""Docs are checked against the code: the README's commands and endpoints exist."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from typer.main import get_command

from offerloop.cli import app
from offerloop.features import Encoder

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_keeps_the_two_setup_commands() -> None:
    assert "make demo" in README
    assert "make test" in README


def test_every_cli_command_is_in_the_readme_and_exists() -> None:
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    mentioned = set(re.findall(r"`offerloop ([a-z][a-z-]*)", README))
    mentioned |= set(re.findall(r"/ `([a-z-]+)(?: \[|`)", README))
    assert mentioned <= commands, mentioned - commands
    assert commands <= mentioned, commands - mentioned


def test_readme_endpoints_exist(tmp_path: Path) -> None:
    from offerloop import Offerloop, load_settings
    from offerloop.serving import create_app

    system = Offerloop(load_settings(env={}, data_dir=str(tmp_path)))
    try:
        paths = set(create_app(system).openapi()["paths"])
    finally:
        system.close()
    for path in set(re.findall(r"localhost:8000(/[a-z0-9/]+)", README)):
        templates = {
            "/v1/decisions/": "/v1/decisions/{decision_id}",
            "/v1/models/": "/v1/models/{version}",
            "/v1/players/": "/v1/players/{player_id}/features",
        }
        for prefix, template in templates.items():
            if path.startswith(prefix):
                path = template
        assert path in paths or path == "/openapi.json", path


def test_the_feature_definition_example_in_the_docs_loads(tmp_path: Path) -> None:
    from offerloop.features import load_features

    text = (ROOT / "docs" / "features.md").read_text()
    block = re.search(r"```python\n(# mygame/features.py.*?)```", text, flags=re.S)
    assert block is not None
    path = tmp_path / "features_example.py"
    path.write_text(block.group(1))
    fs = load_features(str(path))
    assert {"rewarded_ads_24h", "vip_tier", "predicted_ltv", "language"} <= set(fs.names)


def test_every_metric_is_documented(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from offerloop import Offerloop, load_settings
    from offerloop.monitoring import Metrics, Monitor

    doc = (ROOT / "docs" / "monitoring.md").read_text()
    documented = set(re.findall(r"^\| `(offerloop_\w+)` \|", doc, flags=re.M))
    names = set()
    for collector in Metrics().registry._collector_to_names:
        m = next(iter(collector.describe()))
        names.add(m.name + ("_total" if m.type == "counter" else ""))
    system = Offerloop(load_settings(env={}, data_dir=str(tmp_path)))
    try:
        system.bootstrap()
        for i in range(3):
            system.decide(f"p{i}")
        with Monitor(system) as monitor:
            monitor.refresh_gauges()
            text = system.metrics.render().decode()
    finally:
        system.close()
    for family in text_string_to_metric_families(text):
        if not family.name.endswith("_created"):  # the client's creation timestamps
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    assert documented == names


def _code(line: str) -> str:
    """A shell line without its trailing comment (``  # ...`` outside quotes)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == "'":
            quoted = not quoted
        elif ch == "#" and not quoted and (i == 0 or line[i - 1] == " "):
            return line[:i]
    return line


def _curl_commands(text: str) -> list[tuple[list[str], list[str]]]:
    """Every ``curl`` command of the README's ``sh`` blocks (continuation lines and quoted
    bodies joined, comments dropped), each with the example answer lines that follow it."""
    out: list[tuple[list[str], list[str]]] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if not line.startswith("curl "):
                i += 1
                continue
            cmd = _code(line)
            while cmd.rstrip().endswith("\\") or cmd.count("'") % 2:
                i += 1
                nxt = lines[i] if cmd.count("'") % 2 else _code(lines[i])
                cmd = cmd.rstrip().removesuffix("\\") + "\n" + nxt
            i += 1
            answer = []
            while i < len(lines) and lines[i].startswith("# "):
                answer.append(lines[i][2:])
                i += 1
            out.append((shlex.split(cmd, comments=True), answer))
    return out


def test_the_readme_curl_examples_work_against_the_app(tmp_path: Path) -> None:
    """Each curl example of the README, in order, against the app: it answers 2xx, and where
    the README shows an answer, the real one has those keys (with those values where they
    cannot vary). The placeholders stand for what the examples produce: ``d019...`` for the
    decision the example asked for, ``purchase_gbt-5`` for a registered model, the token."""
    from starlette.testclient import TestClient

    from offerloop import ManualClock, Offerloop, load_settings, parse_rfc3339
    from offerloop.pipeline import make_policy
    from offerloop.serving import create_app
    from tests.helpers import logged_data

    clock = ManualClock(parse_rfc3339("2026-11-26T10:06:00Z"))
    settings = load_settings(env={}, data_dir=str(tmp_path), admin_token="tok-readme")
    system = Offerloop(settings, clock)
    commands = _curl_commands(README)
    assert len(commands) >= 12
    try:
        system.bootstrap()
        c = system.campaign(None)
        model = make_policy("purchase_gbt", c, Encoder.of(system.features), settings)
        learned = system.registry.register(c.id, model.fit(logged_data(300, seed=1)[0]), {})
        rules = next(v for v in system.deployments.state(c.id).shadows if "rules" in v)
        system.deployments.release(rules, actor="test")  # so that there is one to roll back to
        subst = {"purchase_gbt-5": learned.version, "$OFFERLOOP_ADMIN_TOKEN": "tok-readme"}
        with TestClient(create_app(system), base_url="http://localhost:8000") as client:
            for argv, answer in commands:
                method, headers, body, url = "GET", {}, None, ""
                args = iter(argv[1:])
                for a in args:
                    if a == "-X":
                        method = next(args)
                    elif a == "-H":
                        k, _, v = next(args).partition(":")
                        headers[k.strip()] = v.strip()
                    elif a == "-d":
                        body = next(args)
                    elif a != "-s":
                        url = a
                for old, new in subst.items():
                    url = url.replace(old, new)
                    body = body.replace(old, new) if body else body
                    headers = {k: v.replace(old, new) for k, v in headers.items()}
                if "purchase" in (body or ""):
                    clock.advance(120)  # the purchase follows the decision
                path = url.removeprefix("localhost:8000")
                r = client.request(method, path, headers=headers, content=body)
                assert r.status_code < 300, (argv, r.status_code, r.text)
                if path == "/v1/decide":
                    subst["d019..."] = r.json()["decision_id"]
                if answer:
                    shown = json.loads(" ".join(answer).replace('"d019..."', '"x"'))
                    real = r.json()
                    assert set(shown) <= set(real), (path, set(shown) - set(real))
                    for k in ("accepted", "duplicates", "campaign", "mode"):
                        if k in shown:
                            assert real[k] == shown[k], (path, k, real[k])
    finally:
        system.close()
