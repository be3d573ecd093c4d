"""The Grafana dashboard and the Prometheus alert rules that ship in deploy/ are checked:
the rules by promtool (syntax and their unit tests, deploy/prometheus/alerts_test.yml), the
dashboard's structure and every PromQL expression in it (by promtool, as recording rules),
and every metric either names by the metrics offerloop exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "offerloop.json"
# what a dashboard variable stands for when an expression is checked outside Grafana
GRAFANA_VARS = {"$__rate_interval": "5m", "$job": ".*", "$campaign": ".*"}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: install Debian's prometheus (make test does)")
    return found


def _exported() -> set[str]:
    """Every series name offerloop exports, as docs/monitoring.md lists them (which
    tests/test_docs.py holds equal to what /metrics serves), histograms with their
    _bucket/_sum/_count."""
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    names: set[str] = set()
    for name, kind in re.findall(r"^\| `(offerloop_\w+)` \| ([a-z]+)", doc, flags=re.M):
        if kind == "histogram":
            names |= {name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(name)
    return names


def _metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(offerloop_[a-z_]+)", expr))


def _exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    out = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    out += [a["expr"] for a in doc["annotations"]["list"]]
    return out


def test_the_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    tool = _promtool()
    check = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [tool, "test", "rules", "alerts_test.yml"],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_alert_names_exported_metrics_and_says_what_to_do() -> None:
    exported = _exported()
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [r for g in groups for r in g["rules"]]
    assert len(alerts) >= 8
    for rule in alerts:
        named = _metrics_in(rule["expr"])
        assert named, rule["alert"]
        assert named <= exported, (rule["alert"], named - exported)
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_the_grafana_dashboard_is_well_formed_and_its_queries_parse(tmp_path: Path) -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "offerloop"
    assert isinstance(doc["schemaVersion"], int)
    assert {v["name"] for v in doc["templating"]["list"]} == {"datasource", "job", "campaign"}
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    spots = set()
    for p in doc["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        spots.add((g["x"], g["y"]))
        assert p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}"
    assert len(spots) == len(doc["panels"])  # no two panels in one place
    exported = _exported()
    exprs = _exprs()
    for e in exprs:
        assert _metrics_in(e) <= exported, (e, _metrics_in(e) - exported)
    # every expression through Prometheus's own parser, as a recording rule
    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    for i, e in enumerate(exprs):
        for var, value in GRAFANA_VARS.items():
            e = e.replace(var, value)
        rules["groups"][0]["rules"].append({"record": f"dashboard:expr_{i}", "expr": e})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    check = subprocess.run(
        [_promtool(), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
