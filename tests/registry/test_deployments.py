"""Deployment is not release: shadow, release, rollback, and the history of it all."""

from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient

from offerloop import Conflict, ManualClock, NotFound, Offerloop, Settings
from offerloop.policies import RulesPolicy


def _state(system: Offerloop) -> tuple[str | None, tuple[str, ...]]:
    st = system.deployments.state(system.default_campaign)
    return st.released, st.shadows


def _register_rules(system: Offerloop) -> str:
    c = system.campaign(None)
    return system.registry.register(c.id, RulesPolicy.from_campaign(c)).version


def test_day_one_random_released_rules_in_shadow(system: Offerloop) -> None:
    released, shadows = _state(system)
    assert released is not None
    assert released.startswith("random-")
    assert len(shadows) == 1
    assert shadows[0].startswith("rules-")


def test_bootstrap_is_idempotent(system: Offerloop) -> None:
    before = system.deployments.history(system.default_campaign)
    system.bootstrap()
    assert system.deployments.history(system.default_campaign) == before
    assert len(system.registry.list()) == 2


def test_release_and_rollback_switch_what_decides(
    client: TestClient, system: Offerloop, clock: ManualClock
) -> None:
    random_v, (rules_v,) = _state(system)
    t_release = clock.advance(60)
    system.deployments.release(rules_v, actor="alice", reason="try rules")
    assert _state(system) == (rules_v, ())
    d = client.post("/v1/decide", json={"player_id": "p"}).json()
    assert d["model_version"] == rules_v
    assert d["propensity"] == 1.0
    t_rollback = clock.advance(60)
    assert (
        system.deployments.rollback(system.default_campaign, actor="bob", reason="revenue dropped")
        == random_v
    )
    assert _state(system) == (random_v, ())
    assert client.post("/v1/decide", json={"player_id": "p"}).json()["model_version"] == random_v
    # history: who, when, what, why; and which version was live at any time
    last = system.deployments.history(system.default_campaign)[-2:]
    assert [(t.action, t.version, t.from_mode, t.to_mode, t.actor) for t in last] == [
        ("rollback", random_v, "", "released", "bob"),
        ("rollback", rules_v, "released", "", "bob"),
    ]
    assert system.deployments.live_at(system.default_campaign, t_release - 1) == random_v
    assert system.deployments.live_at(system.default_campaign, t_release + 1) == rules_v
    assert system.deployments.live_at(system.default_campaign, t_rollback + 1) == random_v
    assert system.deployments.live_at(system.default_campaign, 0) is None


def test_rollback_walks_back_the_release_stack(system: Offerloop) -> None:
    v1, _ = _state(system)
    v2, v3 = _register_rules(system), _register_rules(system)
    system.deployments.release(v2, actor="t")
    system.deployments.release(v3, actor="t")
    assert system.deployments.rollback(system.default_campaign, actor="t") == v2
    assert system.deployments.rollback(system.default_campaign, actor="t") == v1
    with pytest.raises(Conflict, match="no previous release"):
        system.deployments.rollback(system.default_campaign, actor="t")


def test_shadow_deploy_and_undeploy(system: Offerloop) -> None:
    v = _register_rules(system)
    system.deployments.deploy(v, actor="t")
    system.deployments.deploy(v, actor="t")  # idempotent
    assert v in _state(system)[1]
    system.deployments.undeploy(v, actor="t")
    assert v not in _state(system)[1]
    released, _ = _state(system)
    assert released is not None
    with pytest.raises(Conflict):
        system.deployments.undeploy(released, actor="t")
    with pytest.raises(Conflict):
        system.deployments.deploy(released, actor="t")


def test_unknown_version_is_not_found(system: Offerloop) -> None:
    with pytest.raises(NotFound):
        system.deployments.release("linear-999", actor="t")


def test_a_running_service_follows_another_process(settings: Settings, clock: ManualClock) -> None:
    """The CLI is another handle on the same data directory; the service must follow it (it
    re-reads every 0.2 s here; the bound below is for a loaded machine, not a speed)."""
    service = Offerloop(settings.replace(deployment_refresh_seconds=0.2), clock)
    service.bootstrap()
    cli = Offerloop(settings, clock)

    def served_after_change(expected: str) -> str:
        deadline = time.monotonic() + 60.0
        seen = service.decide("p").record.model_version
        while seen != expected and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = service.decide("p").record.model_version
        return seen

    try:
        first = service.decide("p").record.model_version
        (rules_v,) = cli.deployments.state(cli.default_campaign).shadows
        cli.deployments.release(rules_v, actor="cli")
        assert served_after_change(rules_v) == rules_v
        cli.deployments.rollback(cli.default_campaign, actor="cli")
        assert served_after_change(first) == first
    finally:
        service.close()
        cli.close()


def test_canary_serves_a_stable_share_of_players(system: Offerloop) -> None:
    from offerloop.decisions import canary_bucket

    random_v, (rules_v,) = _state(system)
    system.deployments.canary(rules_v, 0.2, actor="t")
    st = system.deployments.state(system.default_campaign)
    assert (st.released, st.canary, st.canary_share) == (random_v, rules_v, 0.2)
    first = {f"q{i}": system.decide(f"q{i}").record for i in range(400)}
    in_canary = {p for p, d in first.items() if d.mode == "canary"}
    assert all(first[p].model_version == rules_v for p in in_canary)
    assert 0.13 < len(in_canary) / 400 < 0.27
    assert in_canary == {p for p in first if canary_bucket(p, system.default_campaign) < 0.2}
    again = {p for p in first if system.decide(p).record.mode == "canary"}
    assert again == in_canary  # the same players keep the same arm
    system.deployments.canary(rules_v, 0.4, actor="t")
    wider = {p for p in first if system.decide(p).record.mode == "canary"}
    assert in_canary < wider  # growing the share keeps everyone already in
    with pytest.raises(Conflict):
        system.deployments.canary(random_v, 0.1, actor="t")
    from offerloop import InvalidInput

    with pytest.raises(InvalidInput):
        system.deployments.canary(rules_v, 1.0, actor="t")
    system.deployments.release(rules_v, actor="t", reason="canary held")
    st = system.deployments.state(system.default_campaign)
    assert (st.released, st.canary) == (rules_v, None)
    assert system.deployments.history(system.default_campaign)[-2].from_mode == "canary"
