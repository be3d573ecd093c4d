"""A short simulation through the real service path: random first, then a learned model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from offerloop import load_settings
from offerloop.sim._demo import DemoConfig, run_demo

pytestmark = pytest.mark.slow  # real processes or long scenarios


def test_short_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path / "demo"))
    days = run_demo(settings, DemoConfig(days=4, players=400, seed=3))
    assert [d.day for d in days] == [0, 1, 2, 3]
    assert all(d.decisions > 100 for d in days)
    # day one: Thompson sampling under the uninformative prior, until a learner has data
    assert days[0].released_versions[0] == "thompson-1"
    # four runs a simulated day: the first with final rewards trains both demo learners
    # (purchase_gbt with and without a recency half-life), registers them and releases the
    # best as the first learned model; each run judges before it trains
    runs = days[0].night.split(" | ")
    assert any(r.startswith("night controller ") for r in runs), runs
    assert "first learned model replaces the day-one policy" in days[0].night, days[0].night
    assert re.search(r"pipeline: purchase_gbt-\d+ best of 2, released: ", days[0].night)
    assert any(v.startswith("purchase_gbt-") for v in days[1].served)
    assert days[-1].served  # decisions per served version are counted
    for d in days:
        j = d.as_json()
        assert {"day", "decisions", "released_version", "released", "random", "oracle"} <= set(j)
        assert j["oracle"] >= j["random"] > 0


def test_fresh_refuses_to_delete_a_directory_the_demo_did_not_create(tmp_path: Path) -> None:
    from offerloop import Conflict

    precious = tmp_path / "prod"
    precious.mkdir()
    (precious / "offerloop.db").write_text("not a demo")
    settings = load_settings(env={}, data_dir=str(precious))
    with pytest.raises(Conflict, match="refusing"):
        run_demo(settings, DemoConfig(days=1, players=10, fresh=True))
    assert (precious / "offerloop.db").read_text() == "not a demo"
