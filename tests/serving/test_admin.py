"""The admin API: token checks (nothing changes without the right token) and transitions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from offerloop import ManualClock, Offerloop, Settings
from offerloop.serving import create_app

TOKEN = "s3cret-token"


@pytest.fixture
def admin(settings: Settings, clock: ManualClock) -> Iterator[tuple[TestClient, Offerloop]]:
    system = Offerloop(settings.replace(admin_token=TOKEN), clock)
    system.bootstrap()
    with TestClient(create_app(system)) as c:
        yield c, system
    system.close()


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Offerloop-Actor": "alice"}


def test_no_token_configured_refuses_everything(client: TestClient, system: Offerloop) -> None:
    before = system.deployments.history(system.default_campaign)
    r = client.post("/v1/admin/release", json={"version": "rules-2"}, headers=_auth())
    assert r.status_code == 403
    assert "admin API is disabled" in r.json()["error"]["message"]
    assert system.deployments.history(system.default_campaign) == before
    assert client.post("/v1/decide", json={"player_id": "p"}).status_code == 200


def test_missing_or_wrong_token_changes_nothing(admin: tuple[TestClient, Offerloop]) -> None:
    client, system = admin
    before = system.deployments.history(system.default_campaign)
    r = client.post("/v1/admin/release", json={"version": "rules-2"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    for bad in ("wrong", TOKEN + "x", TOKEN[:-1], ""):
        r = client.post("/v1/admin/release", json={"version": "rules-2"}, headers=_auth(bad))
        assert r.status_code in (401, 403), bad
    r = client.post(
        "/v1/admin/release",
        json={"version": "rules-2"},
        headers={"Authorization": f"Basic {TOKEN}"},
    )
    assert r.status_code == 403
    assert system.deployments.history(system.default_campaign) == before
    assert (
        client.post(
            "/v1/events",
            json={
                "events": [
                    {
                        "event_id": "e1",
                        "player_id": "p",
                        "type": "session_start",
                        "ts": "2026-03-02T11:00:00Z",
                    }
                ]
            },
        ).status_code
        == 200
    )  # unaffected


def test_transitions_through_the_admin_api(admin: tuple[TestClient, Offerloop]) -> None:
    client, _ = admin
    r = client.post(
        "/v1/admin/canary",
        json={"version": "rules-2", "share": 0.25, "reason": "try it"},
        headers=_auth(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["canary"] == "rules-2"
    assert r.json()["canary_share"] == 0.25
    r = client.post("/v1/admin/release", json={"version": "rules-2"}, headers=_auth())
    assert r.json()["released"] == "rules-2"
    assert r.json()["canary"] is None
    r = client.post("/v1/admin/rollback", json={"reason": "oops"}, headers=_auth())
    assert r.json()["released"] == "random-1"
    hist = client.get("/v1/admin/history", headers=_auth()).json()["transitions"]
    assert hist[-1]["actor"] == "api:alice"
    assert hist[-1]["reason"] == "oops"
    assert (
        client.post(
            "/v1/admin/canary", json={"version": "rules-2", "share": 1.5}, headers=_auth()
        ).status_code
        == 422
    )
    assert (
        client.post("/v1/admin/release", json={"version": "nope-9"}, headers=_auth()).status_code
        == 404
    )
