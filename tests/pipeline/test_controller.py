"""The model test in CI: a short simulation through the pipeline and the controller. The
released policy beats random on the simulator's ground truth, and a broken candidate forced
into canary is rolled back by the controller."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from offerloop import load_settings
from offerloop.sim._demo import DemoConfig, run_demo


@pytest.mark.slow
def test_pipeline_releases_a_better_policy_and_the_controller_rolls_back_a_broken_one(
    tmp_path: Path,
) -> None:
    # the demo's world for 11 days: fewer players give too little evidence for the gate's
    # honest intervals to promote anything in that time (docs/evaluation.md)
    settings = load_settings(env={}, data_dir=str(tmp_path / "d"))
    config = DemoConfig(days=11, report="")
    days = run_demo(settings, config)
    nights = [d.night for d in days]
    # shadow → canary → released, all by the controller on evidence
    assert any(re.search(r"controller canary \S+: live doubly robust uplift", n) for n in nights)
    released = [n for n in nights if re.search(r"controller release \S+: canary held", n)]
    assert released
    # the broken candidate is forced in after that release and rolled back on revenue
    broken = next(i for i, n in enumerate(nights) if "fault injection: broken fixed-" in n)
    assert nights.index(released[0]) <= broken
    assert any(
        re.search(r"controller rollback fixed-\d+: canary worse", n) for n in nights[broken:]
    )
    assert "fixed-" not in days[-1].canary  # the broken canary is gone
    last = days[-1]
    assert last.per_decision(last.expected_released) > last.per_decision(last.expected_random)
