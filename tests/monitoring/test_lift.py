"""The control group and the lift over it: a stable share of players is kept out of
personalisation (uniform random or the default offer, with exact propensities), and
`/v1/monitoring/lift` reports what everything else earns over it, per decision and per
player with an interval, which covers the simulator's ground truth."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from offerloop import ManualClock, Settings
from offerloop._errors import CampaignInvalid
from offerloop.campaigns import default_campaign_path, parse_campaign
from offerloop.decisions import CONTROL, control_bucket
from offerloop.policies import FixedPolicy
from offerloop.serving import InProcessClient, create_app
from offerloop.sim import GameSimulation, World
from tests.conftest import T0, open_system

DAY = 86400.0


def _campaign(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "campaign.toml"
    path.write_text(extra + default_campaign_path().read_text())
    return path


def test_control_settings_are_checked() -> None:
    text = default_campaign_path().read_text()
    with pytest.raises(CampaignInvalid, match=r"control_share: must be a share from 0 to 0\.5"):
        parse_campaign("control_share = 0.9\n" + text)
    with pytest.raises(CampaignInvalid, match="control: must be one of random, default"):
        parse_campaign('control = "nothing"\n' + text)


def test_the_control_group_is_stable_and_served_as_configured(
    settings: Settings, tmp_path: Path
) -> None:
    path = _campaign(tmp_path, 'control_share = 0.25\ncontrol = "default"\n')
    with open_system("embedded", settings.replace(campaigns=(str(path),)), ManualClock(T0)) as s:
        c = s.campaign(None)
        players = [f"p{i}" for i in range(400)]
        inside = {p for p in players if control_bucket(p, c.id) < 0.25}
        assert 70 < len(inside) < 130  # a quarter, by a hash
        for p in players[:100]:
            d = s.decide(p, context={"local_hour": 9})
            if p in inside:
                assert (d.record.mode, d.record.model_version) == (CONTROL, CONTROL)
                assert (d.record.offer_id, d.record.propensity) == (c.default_offer, 1.0)
            else:
                assert d.record.mode == "released"
        again = s.decide(players[0], context={"local_hour": 9})  # the same arm every time
        assert (again.record.mode == CONTROL) == (players[0] in inside)


def test_lift_over_the_control_group_covers_the_ground_truth(
    settings: Settings, tmp_path: Path
) -> None:
    """2 simulated days, 800 players, a third in the control group (uniform random); the
    rest get the constant "mega bundle, urgency" (0.6 of the oracle in this world, random
    about 0.25). The reported intervals cover the lift computed from the world's expected
    revenue of every offer shown, and exclude zero."""
    path = _campaign(tmp_path, "control_share = 0.33\n")
    clock = ManualClock(T0 - 2 * DAY)
    with open_system("embedded", settings.replace(campaigns=(str(path),)), clock) as system:
        c = system.campaign(None)
        best = FixedPolicy(c.offer_ids, [float(o == "mega:urgency") for o in c.offer_ids])
        version = system.registry.register(c.id, best, {"source": "test"}).version
        system.deployments.release(version, actor="test", reason="a constant that earns")
        world = World(c, seed=5)
        with InProcessClient(create_app(system)) as client:
            sim = GameSimulation(client, world, clock, 800, c.id)
            sim.record = True
            sim.seed_history()
            for day in range(2):
                sim.play_day(day)
        clock.set(T0 + DAY)  # every attribution window has closed
        system.commit_journals()
        decisions = system.backend.decisions(c.id, 0.0, T0 + DAY)
        expected = defaultdict(list)
        per_player: dict[bool, dict[str, float]] = {
            True: defaultdict(float),
            False: defaultdict(float),
        }
        for d in decisions:
            arm = d.mode == CONTROL
            value = float(sim.observations[d.decision_id][c.index(d.offer_id)])
            expected[arm].append(value)
            per_player[arm][d.player_id] += value
        truth = np.mean(expected[False]) - np.mean(expected[True])
        truth_player = np.mean(list(per_player[False].values())) - np.mean(
            list(per_player[True].values())
        )
        with InProcessClient(create_app(system)) as client:
            doc = client.get(
                "/v1/monitoring/lift?start=2026-02-27T00:00:00Z&end=2026-03-03T00:00:00Z"
            ).json()
            page = client.get("/dashboard?start=2026-02-27T00:00:00Z&end=2026-03-03T00:00:00Z").text
            shown = client.get("/v1/campaigns").json()["campaigns"][0]
    assert 'id="lift-table"' in page
    assert 'id="lift-chart"' in page
    assert (shown["control_share"], shown["control"]) == (0.33, "random")
    overall = doc["overall"]
    assert overall["decisions"]["control"] > 200
    assert overall["decisions"]["treated"] > 400
    pd = overall["per_decision"]
    assert pd["lower"] <= truth <= pd["upper"]
    assert pd["lower"] > 0  # the constant earns more than random here
    pp = overall["per_player"]
    assert pp["lower"] <= truth_player <= pp["upper"]
    assert len(doc["series"]) >= 2


def test_the_interval_is_honest_when_players_differ() -> None:
    """No true lift, players who differ (each its own purchase rate, several decisions each):
    the 95 % interval per decision covers zero about 95 % of the time. Treating decisions as
    independent, it covered zero about 77 % of the time in this kind of world."""
    from offerloop.backends import DecisionRecord
    from offerloop.monitoring._business import lift

    rng = np.random.default_rng(11)
    covered = {"per_decision": 0, "per_player": 0}
    runs = 200
    for _ in range(runs):
        rows, rewards = [], {}
        for p in range(200):
            mode = CONTROL if p % 3 == 0 else "released"
            rate = min(1.0, rng.exponential(0.05))  # some players buy far more than others
            for k in range(int(rng.integers(2, 16))):
                i = f"d{p}-{k}"
                rows.append(
                    DecisionRecord(i, float(k), f"p{p}", "c", "a:b", mode, mode, 0.5, {}, {})
                )
                rewards[i] = 10.0 if rng.random() < rate else 0.0
        doc = lift(rows, rewards, CONTROL, 86400.0)["overall"]
        for key in covered:
            covered[key] += doc[key]["lower"] <= 0.0 <= doc[key]["upper"]
    assert 0.90 <= covered["per_decision"] / runs <= 0.99
    assert 0.90 <= covered["per_player"] / runs <= 0.99
