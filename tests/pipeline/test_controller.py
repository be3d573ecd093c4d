"""The model test in CI: a short simulation through the pipeline and the controller. The
released policy beats random on the simulator's ground truth, and a broken candidate forced
into canary is rolled back by the controller."""

from __future__ import annotations

from pathlib import Path

from offerloop import load_settings
from offerloop.sim._demo import DemoConfig, run_demo


def test_pipeline_releases_a_better_policy_and_the_controller_rolls_back_a_broken_one(
    tmp_path: Path,
) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path / "d"), canary_min_decisions=100)
    days = run_demo(settings, DemoConfig(days=7, players=800, seed=5, broken_day=3))
    nights = " ".join(d.night for d in days)
    assert "fault injection: broken fixed-" in nights
    assert "controller rollback: canary worse" in nights
    assert days[-1].canary == ""  # the broken canary is gone
    last = days[-1]
    assert last.released_versions[-1].split("-")[0] in ("linear", "gbt", "purchase_gbt")
    assert last.per_decision(last.expected_released) > last.per_decision(last.expected_random)
