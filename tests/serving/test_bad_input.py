"""Bad input gets a 4xx with a JSON body naming the field; a rejected batch writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from offerloop import Offerloop
from tests.conftest import event


def _problem(r: Any) -> str:
    body = r.json()["error"]
    return " | ".join(f"{p['location']}: {p['message']}" for p in body["problems"])


def _nothing_written(system: Offerloop) -> bool:
    return system.backend.player_events("p1", 1e12) == []


@pytest.mark.parametrize(
    ("events", "where"),
    [
        ([{**event(1), "event_id": 7}], "events[0].event_id"),
        ([{**event(1), "player_id": ""}], "events[0].player_id"),
        ([{**event(1), "player_id": "   "}], "events[0].player_id"),
        ([{k: v for k, v in event(1).items() if k != "player_id"}], "events[0].player_id"),
        ([{**event(1), "surprise": 1}], "events[0].surprise"),
        ([event(1, ts="2026-03-02 11:00")], "events[0].ts"),
        ([event(1, ts="1709380800")], "events[0].ts"),
        ([event(1, ts="2026-13-02T11:00:00Z")], "events[0].ts"),
        ([event(1, ts="2027-03-02T11:00:00Z")], "events[0].ts"),
        ([event(1, kind="purchase")], "events[0].properties.amount"),
        ([event(1, kind="purchase", amount="9.99")], "events[0].properties.amount"),
        ([event(1, kind="purchase", amount=-1)], "events[0].properties.amount"),
        ([event(1, kind="level_up")], "events[0].properties.level"),
        ([event(1, kind="Bad Type")], "events[0].type"),
        ([event(1), event(2, ts="yesterday")], "events[1].ts"),
    ],
)
def test_invalid_events_are_422_and_write_nothing(
    client: TestClient, system: Offerloop, events: list[dict[str, Any]], where: str
) -> None:
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 422, r.text
    assert where in _problem(r)
    assert _nothing_written(system)


def test_batch_over_the_maximum_is_rejected(client: TestClient, system: Offerloop) -> None:
    n = system.settings.max_batch_events + 1
    r = client.post("/v1/events", json={"events": [event(i) for i in range(n)]})
    assert r.status_code == 422
    assert "at most 1000" in _problem(r)
    assert _nothing_written(system)


def test_malformed_json_is_400(client: TestClient) -> None:
    r = client.post(
        "/v1/events", content=b'{"events": [', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "malformed_request"


def test_missing_body_is_400(client: TestClient) -> None:
    r = client.post("/v1/decide")
    assert r.status_code == 400
    assert "body" in _problem(r)


def test_empty_batch_is_422(client: TestClient) -> None:
    r = client.post("/v1/events", json={"events": []})
    assert r.status_code == 422
    assert "events" in _problem(r)


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        ({}, 422, "player_id"),
        ({"player_id": ""}, 422, "player_id"),
        ({"player_id": 12}, 422, "player_id"),
        ({"player_id": "p", "extra": 1}, 422, "extra"),
        ({"player_id": "p", "context": {"x": [1]}}, 422, "context.x"),
        ({"player_id": "p", "campaign": "nope"}, 404, "nope"),
    ],
)
def test_bad_decide_requests(
    client: TestClient, body: dict[str, Any], status: int, where: str
) -> None:
    r = client.post("/v1/decide", json=body)
    assert r.status_code == status, r.text
    assert where in _problem(r)


def test_no_client_mistake_gets_a_5xx(client: TestClient) -> None:
    bodies: list[Any] = [
        None,
        [],
        "x",
        1,
        {"events": None},
        {"events": [None]},
        {"events": [{}]},
        {"player_id": None},
    ]
    for path in ("/v1/events", "/v1/decide"):
        for body in bodies:
            r = client.post(path, json=body)
            assert 400 <= r.status_code < 500, (path, body, r.status_code)
            assert r.json()["error"]["message"]
