"""The hot route (serving._hot) answers exactly as the full application would."""

from __future__ import annotations

import json

from starlette.testclient import TestClient

from offerloop import Offerloop
from offerloop.serving._api import DecideOut


def _count(system: Offerloop, status: str) -> float:
    labels = {"route": "/v1/decide", "method": "POST", "status": status}
    return system.metrics.registry.get_sample_value("offerloop_http_requests_total", labels) or 0


def test_well_formed_requests_are_answered_and_counted(
    client: TestClient, system: Offerloop
) -> None:
    for ctype in ("application/json", "application/json; charset=utf-8"):
        r = client.post(
            "/v1/decide",
            content=json.dumps({"player_id": "p1", "context": {"local_hour": 3}}),
            headers={"content-type": ctype},
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert DecideOut.model_validate(r.json()).model_dump() == r.json()
        logged = system.decision(r.json()["decision_id"])[0]
        assert logged.context == {"local_hour": 3}
    assert _count(system, "200") == 2


def test_errors_get_the_one_error_format(client: TestClient, system: Offerloop) -> None:
    unknown = client.post("/v1/decide", json={"player_id": "p1", "campaign": "nope"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found"
    assert "nope" in unknown.json()["error"]["message"]
    assert _count(system, "404") == 1
    # not well-formed: the full application names the problem
    extra = client.post("/v1/decide", json={"player_id": "p1", "colour": "red"})
    assert extra.status_code == 422
    assert [p["location"] for p in extra.json()["error"]["problems"]] == ["colour"]
    bad = client.post(
        "/v1/decide", content=b'{"player_id": "p1"', headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "malformed_request"
    assert _count(system, "422") == 1
    assert _count(system, "400") == 1
