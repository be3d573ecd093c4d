"""The HTTP API contract, in-process."""

from __future__ import annotations

import numpy as np
from starlette.testclient import TestClient

from offerloop import ManualClock, Offerloop
from offerloop.serving._api import DecideOut
from tests.conftest import event

DECIDE_KEYS = {
    "decision_id",
    "campaign",
    "offer_id",
    "bundle_id",
    "message_id",
    "price",
    "message",
    "model_version",
    "propensity",
    "mode",
    "decision_token",
}


def test_openapi_lists_the_v1_routes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for path in ("/v1/events", "/v1/decide", "/v1/decisions/{decision_id}", "/healthz"):
        assert path in doc["paths"]


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_ingest_counts_accepted_and_duplicates(client: TestClient) -> None:
    batch = {"events": [event(1), event(2, kind="level_up", level=3)]}
    assert client.post("/v1/events", json=batch).json() == {
        "accepted": 2,
        "duplicates": 0,
        "attribution": {},
        "stored": "database",
        "features": "updated",
    }
    # the client retries the same batch: nothing is counted twice
    assert client.post("/v1/events", json=batch).json() == {
        "accepted": 0,
        "duplicates": 2,
        "attribution": {},
        "stored": "database",
        "features": "updated",
    }
    mixed = {"events": [event(2, kind="level_up", level=3), event(3), event(3)]}
    assert client.post("/v1/events", json=mixed).json() == {
        "accepted": 1,
        "duplicates": 2,
        "attribution": {},
        "stored": "database",
        "features": "updated",
    }


def test_decide_answers_the_contract(client: TestClient, system: Offerloop) -> None:
    r = client.post("/v1/decide", json={"player_id": "p1"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == DECIDE_KEYS
    c = system.campaign(None)
    assert body["campaign"] == c.id
    assert body["offer_id"] == f"{body['bundle_id']}:{body['message_id']}"
    offer = c.offers[c.index(body["offer_id"])]
    assert body["price"] == offer.price
    assert body["message"] == offer.message.text
    assert body["model_version"].startswith("random-")
    assert body["mode"] == "released"
    assert abs(body["propensity"] - 1 / len(c.offers)) < 1e-12
    # built by hand on the hot path: exactly the documented response model
    assert DecideOut.model_validate(body).model_dump() == body


def test_decision_is_logged_with_features_shadows_and_propensity(
    client: TestClient, system: Offerloop
) -> None:
    client.post(
        "/v1/events",
        json={
            "events": [
                event(1, kind="player_profile", platform="ios", country="us"),
                event(2, kind="level_up", level=30),
                event(3, kind="purchase", amount=60.0),
            ]
        },
    )
    d = client.post("/v1/decide", json={"player_id": "p1", "context": {"local_hour": 20}}).json()
    system.flush_shadows()  # shadows are scored after the answer; a lookup never waits
    got = client.get(f"/v1/decisions/{d['decision_id']}").json()
    assert got["offer_id"] == d["offer_id"]
    assert got["propensity"] == d["propensity"]
    assert got["model_version"] == d["model_version"]
    assert got["features"]["level"] == 30
    assert got["features"]["country"] == "us"
    assert got["features"]["spend_total"] == 60
    assert got["features"]["local_hour"] == 20
    assert got["context"] == {"local_hour": 20}
    # day one: rules run in shadow; a payer who spent 60 gets the whale rule's offer
    (shadow,) = got["shadows"]
    assert shadow["version"].startswith("rules-")
    assert shadow["offer_id"] == "mega:urgency"
    assert shadow["propensity"] == 1.0
    assert got["revenue"] == 0
    assert got["reward_final"] is False


def test_logged_propensity_is_the_released_policys_probability(
    client: TestClient, system: Offerloop, clock: ManualClock
) -> None:
    """Release the rules policy: each logged propensity must equal its act() probability."""
    rules = system.deployments.state(system.default_campaign).shadows[0]
    system.deployments.release(rules, actor="test")
    policy = system.registry.load(rules)
    for i in range(20):
        d = client.post("/v1/decide", json={"player_id": f"q{i}"}).json()
        logged = system.backend.get_decisions([d["decision_id"]]).get(d["decision_id"])
        assert logged is not None
        p = policy.act(logged.features)
        c = system.campaign(None)
        assert np.isclose(p[c.index(d["offer_id"])], d["propensity"])
        assert d["model_version"] == rules


def test_metrics_expose_requests_and_decisions(client: TestClient) -> None:
    client.post("/v1/decide", json={"player_id": "p1"})
    text = client.get("/metrics").text
    assert (
        'offerloop_http_requests_total{method="POST",route="/v1/decide",status="200"} 1.0' in text
    )
    assert "offerloop_http_request_duration_seconds_bucket" in text
    assert 'le="0.005"' in text
    assert 'offerloop_decisions_total{campaign="spring_sale"' in text
    assert 'mode="released"' in text
    assert 'offerloop_deployed_version{campaign="spring_sale",mode="shadow"' in text


def test_unknown_decision_is_404(client: TestClient) -> None:
    r = client.get("/v1/decisions/nope")
    assert r.status_code == 404
    assert "nope" in r.json()["error"]["message"]


def test_models_endpoints(client: TestClient, system: Offerloop) -> None:
    models = client.get("/v1/models").json()["models"]
    assert [m["mode"] for m in models] == ["released", "shadow"]
    one = client.get(f"/v1/models/{models[0]['version']}").json()
    assert one["sha256"] == system.registry.get(models[0]["version"]).sha256
    assert client.get("/v1/models/nope-1").status_code == 404
    assert client.get("/v1/models", params={"campaign": "nope"}).status_code == 404


def test_campaigns_list_their_offers_and_what_serves_them(
    client: TestClient, system: Offerloop
) -> None:
    body = client.get("/v1/campaigns").json()
    assert [c["campaign"] for c in body["campaigns"]] == list(system.campaigns)
    c = system.campaign(None)
    one = client.get(f"/v1/campaigns/{c.id}").json()
    assert one == body["campaigns"][0]
    assert one["default"] is True
    assert [o["offer_id"] for o in one["offers"]] == c.offer_ids
    first = one["offers"][0]
    assert first["price"] == c.offers[0].price
    assert first["products"] == dict(c.offers[0].bundle.products)
    assert first["message"] == c.offers[0].message.text
    assert (one["released"], one["shadows"]) == ("random-1", ["rules-2"])
    assert one["rules"] == len(c.rules)
    missing = client.get("/v1/campaigns/nope")
    assert missing.status_code == 404
    assert "nope" in missing.json()["error"]["message"]


def test_the_openapi_document_has_errors_per_route_the_bearer_scheme_and_examples(
    client: TestClient,
) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    error = {"$ref": "#/components/schemas/ErrorOut"}

    def codes(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"]) - {"200"}

    assert codes("/healthz", "get") == set()  # nothing a client can get wrong
    assert codes("/v1/decide", "post") == {"400", "404", "408", "413", "422", "503"}
    assert codes("/v1/campaigns", "get") == {"503"}
    assert "404" not in codes("/v1/events", "post")
    answer = paths["/v1/decide"]["post"]["responses"]["422"]
    assert answer["content"]["application/json"]["schema"] == error
    assert doc["components"]["schemas"]["ErrorOut"]["properties"]["error"]
    scheme = doc["components"]["securitySchemes"]["adminToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, item in paths.items():
        for op in item.values():
            secured = op.get("security") == [{"adminToken": []}]
            assert secured == path.startswith("/v1/admin/"), path
    assert doc["components"]["schemas"]["DecideIn"]["examples"][0]["player_id"] == "p42"
    assert doc["components"]["schemas"]["EventBatch"]["examples"]
