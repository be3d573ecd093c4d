"""The settings ``offerloop serve`` runs with (``Settings.for_service``): decisions journaled
and committed in batches, shadows scored in a child process; on both backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from offerloop import ManualClock, Offerloop, Settings
from offerloop.policies import FixedPolicy
from offerloop.serving import create_app
from tests.conftest import BACKENDS, open_system


@pytest.fixture(params=BACKENDS)
def service(
    request: pytest.FixtureRequest, settings: Settings, clock: ManualClock
) -> Iterator[Offerloop]:
    with open_system(request.param, settings.for_service(), clock) as s:
        yield s


def _metric(system: Offerloop, name: str, **labels: str) -> float:
    return system.metrics.registry.get_sample_value(name, labels) or 0.0


def test_journaled_decisions_and_shadows_scored_in_a_child_process(service: Offerloop) -> None:
    assert service.settings.decision_log == "journal"
    assert service.settings.shadow_scoring == "process"
    c = service.campaign(None)
    broken = service.registry.register(c.id, FixedPolicy(c.offer_ids[:2], [0.5, 0.5]))
    # loads, then raises on scoring
    service.deployments.deploy(broken.version, "shadow", actor="test")
    with TestClient(create_app(service)) as client:
        ids = []
        for i in range(20):
            r = client.post("/v1/decide", json={"player_id": f"p{i}"})
            assert r.status_code == 200, r.text
            ids.append(r.json()["decision_id"])
        # read right after the answer: found (in the journal or the database) at once,
        # without waiting for the shadow worker
        got = client.get(f"/v1/decisions/{ids[-1]}")
        assert got.status_code == 200, got.text
        service.flush_shadows()  # what judges and reports do first
        got = client.get(f"/v1/decisions/{ids[-1]}")
        assert [s["version"] for s in got.json()["shadows"]] == ["rules-2"]
    stored = service.backend.decisions(c.id, 0.0, 1e12)
    assert sorted(d.decision_id for d in stored) == sorted(ids)  # each exactly once
    assert all(len(d.shadows) == 1 for d in stored)
    labels = {"campaign": c.id, "model_version": "rules-2"}
    assert _metric(service, "offerloop_shadow_scores_total", **labels) == 20
    errors = _metric(
        service,
        "offerloop_policy_errors_total",
        campaign=c.id,
        model_version=broken.version,
        mode="shadow",
    )
    assert errors == 20  # the child's counts reach this process's metrics
    assert service.journal.backlog() == 0
