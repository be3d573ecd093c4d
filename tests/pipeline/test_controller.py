"""The model test in CI: six days of the demo through the pipeline and the controller. A
learned policy takes over from the day-one policy within the first day and serves nearly
everyone from day 1, it beats random on the simulator's ground truth, and a broken candidate
forced into canary on night 4 is rolled back by the controller the next day."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from offerloop import load_settings
from offerloop.sim._demo import DemoConfig, run_demo

LEARNED = re.compile(r"^(linear|gbt|purchase_gbt)-\d+$")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a guard against a hang, not a speed test: 24 pipeline runs
def test_a_learned_policy_serves_within_a_day_and_a_broken_canary_is_rolled_back(
    tmp_path: Path,
) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path / "d"))
    days = run_demo(settings, DemoConfig(days=6, report=""))
    nights = [d.night for d in days]

    def learned_share(day: int) -> float:
        d = days[day]
        return sum(n for v, n in d.served.items() if LEARNED.match(v)) / d.decisions

    assert learned_share(0) > 0  # the first learned model took over on day 0
    assert learned_share(1) > 0.9
    assert learned_share(2) > 0.9
    # every promotion is a recorded step with its evidence: the handover from the day-one
    # policy, then each refresh of the released learner
    assert "released: first learned model replaces the day-one policy" in nights[0]
    assert any(re.search(r"released \(refresh of purchase_gbt", n) for n in nights[:3])
    # the broken candidate: forced in on night 4, rolled back on the controller's evidence
    assert "fault injection: broken fixed-" in nights[4]
    assert re.search(r"controller rollback fixed-\d+: canary (worse|breaks)", nights[5])
    # the day it was rolled back it served less than a fifth of that day's decisions
    broken = next(v for v in days[5].served if v.startswith("fixed-"))
    assert days[5].served[broken] < 0.2 * days[5].decisions
    last = days[-1]
    assert last.per_decision(last.expected_released) > 2 * last.per_decision(last.expected_random)
