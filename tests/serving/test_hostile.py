"""Hostile and unlucky input (issue 13, findings 1, 6 and 7): every client mistake is a 4xx
with a JSON body naming the field, nothing is half-written, and nothing a client sends can
make a store refuse a row after it was acknowledged, on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from offerloop import Offerloop
from offerloop._limits import check_id
from offerloop.serving import create_app
from tests.conftest import event
from tests.helpers import examples

HUGE = "1" + "0" * 400


def _post(client: TestClient, url: str, body: str) -> Any:
    return client.post(url, content=body.encode(), headers={"content-type": "application/json"})


def _error(r: Any) -> str:
    assert r.headers["content-type"].startswith("application/json"), r.text
    doc = r.json()["error"]
    return " | ".join(f"{p['location']}: {p['message']}" for p in doc["problems"])


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ('{"player_id": "p\\u0000x"}', "player_id"),  # finding 1: it poisoned the journal
        ('{"player_id": "p\\u0007x"}', "player_id"),
        ('{"player_id": "p\\ud800"}', "player_id"),
        ('{"player_id": "p", "campaign": "c\\u0000"}', "campaign"),
        ('{"player_id": "p", "context": {"k\\u0000": 1}}', "context"),
        (f'{{"player_id": "p", "context": {{"local_hour": {HUGE}}}}}', "context.local_hour"),
        ('{"player_id": "p", "context": {"local_hour": 1e400}}', "context.local_hour"),
        ('{"player_id": "p", "context": {"local_hour": NaN}}', "body"),
        ('{"player_id": "p", "context": {"x": "a\\u0000"}}', "context.x"),
        ('{"player_id": "p", "context": {"x": [1, 2]}}', "context.x"),
    ],
)
def test_hostile_decide_requests_are_4xx_naming_the_field(
    client: TestClient, system: Offerloop, body: str, where: str
) -> None:
    r = _post(client, "/v1/decide", body)
    assert 400 <= r.status_code < 500, r.text
    assert where in _error(r)
    assert system.journal.backlog() == 0
    assert system.backend.decisions(system.default_campaign, 0, 1e12) == []


def _events_body(*events: str) -> str:
    return '{"events": [' + ",".join(events) + "]}"


def _ev(player: str = '"p1"', kind: str = "session_start", props: str = "{}", **kw: str) -> str:
    fields = {
        "event_id": kw.get("event_id", '"e1"'),
        "player_id": player,
        "type": f'"{kind}"',
        "ts": kw.get("ts", '"2026-03-02T11:00:00Z"'),
        "properties": props,
    }
    return "{" + ",".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (_events_body(_ev(player='"p\\u0000x"')), "events[0].player_id"),
        (_events_body(_ev(event_id='"e\\u001f"')), "events[0].event_id"),
        (_events_body(_ev(kind="purchase", props=f'{{"amount": {HUGE}}}')), "amount"),
        (_events_body(_ev(kind="purchase", props='{"amount": 1e400}')), "amount"),
        (_events_body(_ev(kind="level_up", props=f'{{"level": {HUGE}}}')), "level"),
        (_events_body(_ev(props=f'{{"score": {HUGE}}}')), "properties.score"),
        (_events_body(_ev(props='{"bad\\u0000key": 1}')), "properties"),
        (_events_body(_ev(props='{"s": "x\\u0000y"}')), "properties.s"),
        (_events_body(_ev(props='{"s": "\\udc00"}')), "properties.s"),
        (_events_body(_ev(props='{"n": Infinity}')), "body"),
        (_events_body(_ev(props='{"a": ' + "[" * 50 + "]" * 50 + "}")), "properties.a"),
        (_events_body(_ev(props='{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")), "body"),
        (
            _events_body(_ev(kind="player_profile", props='{"country": "' + "x" * 5000 + '"}')),
            "properties.country",
        ),
        (
            _events_body(_ev(kind="purchase", props='{"amount": 1, "decision_id": "d\\u0000"}')),
            "decision_id",
        ),
        # finding 7: accepted, and then this player's features answered 500 for good
        (_events_body(_ev(ts='"0001-01-01T00:00:00+01:00"')), "events[0].ts"),
    ],
)
def test_hostile_events_are_4xx_naming_the_field_and_write_nothing(
    client: TestClient, system: Offerloop, body: str, where: str
) -> None:
    r = _post(client, "/v1/events", body)
    assert 400 <= r.status_code < 500, r.text
    assert where in _error(r)
    assert system.backend.player_events("p1", 1e12) == []
    assert client.get("/v1/players/p1/features").status_code == 200


@pytest.fixture
def small_body(system: Offerloop) -> Iterator[TestClient]:
    system.settings = system.settings.replace(max_body_bytes=4096)
    with TestClient(create_app(system)) as c:
        yield c


def test_a_chunked_upload_is_limited_on_the_bytes_read(
    small_body: TestClient, system: Offerloop
) -> None:
    """Finding 6: a chunked upload bypassed the body limit (100 MB stored in one event)."""
    big = json.dumps({"events": [event(1, note="x" * 1000) for _ in range(10)]}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    r = small_body.post(
        "/v1/events", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "too_large"
    assert system.backend.player_events("p1", 1e12) == []
    declared = small_body.post(
        "/v1/events", content=big, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413


def test_decision_records_carry_bounded_values(client: TestClient, system: Offerloop) -> None:
    """Finding 6: a 10 MB profile string was copied into every later decision record."""
    long = "x" * 1024  # the longest text value accepted
    r = client.post("/v1/events", json={"events": [event(1, kind="player_profile", country=long)]})
    assert r.status_code == 200, r.text
    d = client.post("/v1/decide", json={"player_id": "p1"}).json()
    record = system.decision(d["decision_id"])[0]
    assert len(json.dumps(dict(record.features))) < 4096


# -- a hypothesis strategy of hostile values, on both backends ---------------------------------

_hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff", "\x1b[31m", "\u202e", "\ufffe", " "]),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=1100),
)
_hostile_number = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([HUGE, "-" + HUGE, "1e400", "-1e400", "NaN", "Infinity", "1e-400"]),
    st.floats(allow_nan=False, allow_infinity=False),
)
_hostile_ts = st.sampled_from(
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2026-03-02T11:00:00Z",
        "2026-02-30T11:00:00Z",
        "1969-12-31T23:59:59Z",
        "2026-03-02T11:00:00",
    ]
)


def _json_text(s: str) -> str:
    return json.dumps(s)  # escapes NUL and unpaired surrogates as \\u sequences


def _number_text(x: object) -> str:
    return x if isinstance(x, str) else json.dumps(x)


@st.composite
def _hostile_batch(draw: st.DrawFn) -> str:
    events = []
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["purchase", "level_up", "player_profile", "custom"]))
        props: dict[str, str] = {}
        if kind == "purchase":
            props["amount"] = _number_text(draw(_hostile_number))
            if draw(st.booleans()):
                props["decision_id"] = _json_text(draw(_hostile_text))
        elif kind == "level_up":
            props["level"] = _number_text(draw(_hostile_number))
        else:
            key = draw(st.one_of(st.sampled_from(["country", "platform"]), _hostile_text))
            value = draw(
                st.one_of(_hostile_text.map(_json_text), _hostile_number.map(_number_text))
            )
            props[_json_text(key)[1:-1]] = value
            depth = draw(st.integers(0, 6))
            props["nested"] = "[" * depth + "1" + "]" * depth
        body = ",".join(f'"{k}": {v}' for k, v in props.items())
        player = draw(st.one_of(st.just("p1"), _hostile_text))
        events.append(
            "{"
            f'"event_id": "e{i}", "player_id": {_json_text(player)}, "type": "{kind}", '
            f'"ts": "{draw(_hostile_ts)}", "properties": {{{body}}}'
            "}"
        )
    return _events_body(*events)


@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_hostile_batch(), decide=st.one_of(_hostile_text, st.just("p1")))
def test_no_hostile_input_gets_a_5xx_or_breaks_a_player(
    client: TestClient, system: Offerloop, body: str, decide: str
) -> None:
    r = _post(client, "/v1/events", body)
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code != 200:
        assert r.json()["error"]["problems"]
    d = _post(client, "/v1/decide", json.dumps({"player_id": decide}))
    assert d.status_code < 500, (d.status_code, d.text[:300])
    for player in ("p1", decide):
        if check_id(player) is None:  # a player id a client could have sent
            f = client.get(f"/v1/players/{quote(player, safe='')}/features")
            assert f.status_code < 500, f.text[:300]
    system.journal.flush()  # every acknowledged decision is storable
    assert system.backend.quarantined() == []
