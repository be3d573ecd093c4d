"""Docs are checked against the code: the README's commands and endpoints exist."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from offerloop.cli import app

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_keeps_the_two_setup_commands() -> None:
    assert "make demo" in README
    assert "make test" in README


def test_every_cli_command_is_in_the_readme_and_exists() -> None:
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    mentioned = set(re.findall(r"`offerloop ([a-z-]+)", README))
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
