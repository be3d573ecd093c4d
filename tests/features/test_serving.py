"""Features on the serving path: fresh at the next request, rebuilt after a restart."""

from __future__ import annotations

from starlette.testclient import TestClient

from offerloop import ManualClock, Offerloop, Settings, format_ts
from tests.conftest import event


def test_an_event_is_in_the_features_as_soon_as_it_is_acknowledged(
    client: TestClient, clock: ManualClock
) -> None:
    before = client.get("/v1/players/p1/features").json()["features"]
    assert before["purchases_total"]["value"] == 0
    assert before["purchases_total"]["newest_event_ts"] is None
    now = format_ts(clock.now())
    r = client.post(
        "/v1/events",
        json={
            "events": [
                event(1, kind="purchase", ts=now, amount=4.99),
                event(2, kind="player_profile", ts=now, country="de"),
            ]
        },
    )
    assert r.status_code == 200
    after = client.get("/v1/players/p1/features").json()
    assert after["features"]["purchases_total"] == {"value": 1, "newest_event_ts": now}
    assert after["features"]["spend_total"]["value"] == 4.99
    assert after["features"]["hours_since_purchase"]["value"] == 0.0
    assert after["features"]["country"]["value"] == "de"
    d = client.post("/v1/decide", json={"player_id": "p1"}).json()
    logged = client.get(f"/v1/decisions/{d['decision_id']}").json()["features"]
    assert logged["purchases_total"] == 1


def test_windows_slide_with_time(client: TestClient, clock: ManualClock) -> None:
    client.post(
        "/v1/events",
        json={"events": [event(1, kind="session_start", ts=format_ts(clock.now() - 1800))]},
    )
    f = client.get("/v1/players/p1/features").json()["features"]
    assert f["sessions_1h"]["value"] == 1
    clock.advance(1801)
    f = client.get("/v1/players/p1/features").json()["features"]
    assert f["sessions_1h"]["value"] == 0
    assert f["sessions_24h"]["value"] == 1


def test_online_state_is_rebuilt_from_the_log_at_start(
    settings: Settings, clock: ManualClock
) -> None:
    from offerloop.events import EventIn

    a = Offerloop(settings, clock)
    a.ingest(
        [
            EventIn(
                event_id=f"e{i}",
                player_id="p",
                type="purchase",
                ts=format_ts(clock.now() - i * 3600),
                properties={"amount": 1.0 + i},
            )
            for i in range(30)
        ]
    )
    served = a.player_features.online.read("p", clock.now())
    a.close()
    b = Offerloop(settings, clock)
    try:
        assert (
            b.player_features.rebuilt_events == 0
        )  # lazy: commands that never read features skip it
        assert b.player_features.online.read("p", clock.now()) == served
        assert b.player_features.rebuilt_events == 30
    finally:
        b.close()


def test_unknown_player_gets_defaults(client: TestClient, system: Offerloop) -> None:
    f = client.get("/v1/players/nobody/features").json()["features"]
    for name, default in system.features.defaults.items():
        assert f[name]["value"] == default


def test_bad_player_id_is_4xx(client: TestClient) -> None:
    assert client.get("/v1/players/%20/features").status_code == 422
