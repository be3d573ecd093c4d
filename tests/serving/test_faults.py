"""Faults of our own dependencies, for real (a TCP proxy we cut, a corrupt artifact, a policy
that raises): decisions keep being answered, nothing acknowledged is lost, every fault is
marked in the decision log and counted, and recovery is automatic."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from offerloop import BackendUnavailable, ManualClock, Offerloop, load_settings
from offerloop.backends import OFFER_OUTCOME
from offerloop.policies import FixedPolicy
from offerloop.serving import create_app
from offerloop.testing import FaultProxy
from tests.conftest import PG_URL, REDIS_URL, T0, _drop, event, unique_name

pytestmark = pytest.mark.needs("postgres", "redis")


@contextmanager
def _behind_proxies(
    tmp_path: Path, service: bool, **extra: Any
) -> Iterator[tuple[Offerloop, FaultProxy, FaultProxy]]:
    """An offerloop on PostgreSQL and Redis, each behind a proxy the test controls
    (``service``: with `offerloop serve`'s configuration and background tasks)."""
    pg, rd = FaultProxy(5432), FaultProxy(6379)
    name = unique_name("f")
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "d"),
        database_url=PG_URL.replace(":5432", f":{pg.port}"),
        database_schema=name,
        redis_url=REDIS_URL.replace(":6379", f":{rd.port}"),
        redis_prefix=f"{name}:",
        decision_seed=1,
        **extra,
    )
    system = Offerloop(settings.for_service() if service else settings, ManualClock(T0))
    system.bootstrap(actor="test")
    system.player_features.warm()
    if service:
        system.start_background()
    try:
        yield system, pg, rd
    finally:
        pg.restore()
        rd.restore()
        system.close()
        pg.close()
        rd.close()
        _drop(settings.replace(database_url=PG_URL, redis_url=REDIS_URL))


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Offerloop, FaultProxy, FaultProxy]]:
    """Library use (direct decision log), every deployment change seen at once."""
    with _behind_proxies(tmp_path, False, deployment_refresh_seconds=0.0) as got:
        yield got


def _metric(system: Offerloop, name: str, **labels: str) -> float:
    value = system.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_redis_down_decisions_use_default_features_and_recover(
    proxied: tuple[Offerloop, FaultProxy, FaultProxy],
) -> None:
    system, _, rd = proxied
    with TestClient(create_app(system)) as client:
        ev = {
            "event_id": "e1",
            "player_id": "p1",
            "type": "purchase",
            "ts": "2026-03-02T11:00:00Z",
            "properties": {"amount": 9.99},
        }
        assert client.post("/v1/events", json={"events": [ev]}).status_code == 200
        ok = client.post("/v1/decide", json={"player_id": "p1"}).json()
        assert system.decision(ok["decision_id"])[0].features["purchases_total"] == 1
        rd.cut()
        t = time.perf_counter()
        degraded = client.post("/v1/decide", json={"player_id": "p1"})
        elapsed = time.perf_counter() - t
        assert degraded.status_code == 200
        assert elapsed < 6.0  # within Redis's socket timeout, never hanging
        record = system.decision(degraded.json()["decision_id"])[0]
        assert record.features["purchases_total"] == 0  # the default
        assert record.fallback.startswith("features: defaults (Redis read failed")
        assert (
            _metric(
                system,
                "offerloop_fallback_decisions_total",
                campaign="spring_sale",
                reason="features",
            )
            == 1
        )
        rd.restore()
        # recovered by itself: the breaker lets a decision try Redis again after its cooldown
        # (a second; under `serve` a background probe closes it as soon as Redis answers)
        deadline = time.monotonic() + 30
        while True:
            back = client.post("/v1/decide", json={"player_id": "p1"}).json()
            again = system.decision(back["decision_id"])[0]
            if not again.fallback or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert again.features["purchases_total"] == 1
        assert again.fallback == ""


def test_postgres_down_events_are_refused_and_decisions_are_journaled(
    proxied: tuple[Offerloop, FaultProxy, FaultProxy],
) -> None:
    system, pg, _ = proxied
    with TestClient(create_app(system)) as client:
        assert client.post("/v1/decide", json={"player_id": "p0"}).status_code == 200
        pg.cut()
        ev = {
            "event_id": "e9",
            "player_id": "p1",
            "type": "session_start",
            "ts": "2026-03-02T11:00:00Z",
        }
        refused = client.post("/v1/events", json={"events": [ev]})
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["type"] == "backend_unavailable"
        ids = []
        for i in range(5):
            r = client.post("/v1/decide", json={"player_id": f"p{i}"})
            assert r.status_code == 200, r.text
            ids.append(r.json()["decision_id"])
        assert system.journal.backlog() == 5
        assert (
            _metric(
                system,
                "offerloop_fallback_decisions_total",
                campaign="spring_sale",
                reason="log_journaled",
            )
            == 5
        )
        pg.restore()
        deadline = time.monotonic() + 10
        while system.journal.backlog() and time.monotonic() < deadline:
            time.sleep(0.05)  # the journal's writer retries by itself
        assert system.journal.backlog() == 0
        for d in ids:  # every acknowledged decision reached the database exactly once
            record = system.backend.get_decisions([d]).get(d)
            assert record is not None
            assert "decision log journaled locally" in record.fallback
        assert client.post("/v1/events", json={"events": [ev]}).json()["accepted"] == 1


def test_a_corrupt_artifact_or_a_raising_release_never_fails_a_decision(system: Offerloop) -> None:
    c = system.campaign(None)
    bad = system.registry.register(c.id, FixedPolicy(c.offer_ids[:2], [0.5, 0.5]))
    system.deployments.release(bad.version, actor="test")  # it cannot score 24 offers: it raises
    d = system.decide("p1")
    assert d.record.model_version == bad.version
    assert d.record.propensity == pytest.approx(1 / len(c.offers))  # uniform, exact
    assert d.record.fallback.startswith(f"release {bad.version} failed")
    assert (
        _metric(
            system,
            "offerloop_policy_errors_total",
            campaign=c.id,
            model_version=bad.version,
            mode="released",
        )
        == 1
    )
    # a shadow whose artifact is corrupt is taken out of service; the release keeps serving
    system.deployments.rollback(system.default_campaign, actor="test")
    good = system.registry.register(
        c.id, FixedPolicy(c.offer_ids, [1 / len(c.offers)] * len(c.offers))
    )
    system.deployments.deploy(good.version, "shadow", actor="test")
    art = good.artifact
    system.backend.put_artifact(art, b'{"kind": "fixed", "tampered": true}')
    system.registry._cache.clear()
    system.decider.invalidate()
    d = system.decide("p2")
    assert d.record.model_version == "random-1"
    assert good.version not in {s.version for s in d.record.shadows}
    assert (
        _metric(
            system,
            "offerloop_policy_errors_total",
            campaign=c.id,
            model_version=good.version,
            mode="shadow",
        )
        == 1
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Offerloop, TestClient, FaultProxy, FaultProxy]]:
    """`offerloop serve`'s configuration (journal, background refresh and follower, bounded
    request work), with short deadlines."""
    with (
        _behind_proxies(
            tmp_path,
            True,
            database_timeout_seconds=1.0,
            request_timeout_seconds=2.0,
            online_follow_seconds=0.2,
            shadow_scoring="thread",
        ) as (system, pg, rd),
        TestClient(create_app(system, service=True)) as client,
    ):
        yield system, client, pg, rd


def _until(check: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    """Wait for something the service does by itself (an upper bound, not a speed)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_stalled_postgres_never_freezes_decisions_or_the_health_check(
    served: tuple[Offerloop, TestClient, FaultProxy, FaultProxy],
) -> None:
    """Finding 2 of issue 13: PostgreSQL accepting connections but never answering froze
    every request of the process, /healthz included."""
    system, client, pg, _ = served
    assert client.post("/v1/decide", json={"player_id": "p0"}).status_code == 200
    pg.stall()
    ids = []
    for i in range(20):  # before: the first of these waited for ever
        r = client.post("/v1/decide", json={"player_id": f"p{i}"})
        assert r.status_code == 200, r.text
        ids.append(r.json()["decision_id"])
    assert client.get("/healthz").status_code == 200
    # events are accepted too: journaled locally (on disk) before the answer
    r = client.post("/v1/events", json={"events": [event(1, kind="purchase", amount=2.0)]})
    assert r.status_code == 200, r.text
    assert (r.json()["stored"], r.json()["features"]) == ("journal", "deferred")
    pg.restore()
    _until(lambda: system.journal.backlog() == 0, "the journal never drained")
    _until(lambda: system.event_journal.backlog() == 0, "the event journal never drained")
    assert len(system.backend.get_decisions(ids)) == 20  # each acknowledged one, once
    stored = system.backend.player_events("p1", 1e12)
    assert [e.event_id for e in stored if e.type != OFFER_OUTCOME] == ["e1"]
    # and p1's decision as an offer_outcome event, once (events._offers)
    assert [e.event_id for e in stored if e.type == OFFER_OUTCOME] == [f"{ids[1]}.seen"]
    again = client.post("/v1/events", json={"events": [event(1, kind="purchase", amount=2.0)]})
    assert again.json()["duplicates"] == 1  # a retry is a duplicate, never a second copy
    # and the online state got it from the log, once
    _until(
        lambda: (
            system.player_features.online.read("p1", system.clock.now())["purchases_total"] == 1
        ),
        "the journaled purchase never reached the online state",
    )


def test_a_stalled_redis_costs_decisions_their_features_never_their_answer(
    served: tuple[Offerloop, TestClient, FaultProxy, FaultProxy],
) -> None:
    system, client, _, rd = served
    buy = event(1, kind="purchase", amount=9.99)
    assert client.post("/v1/events", json={"events": [buy]}).json()["features"] == "updated"
    rd.stall()
    r = client.post("/v1/decide", json={"player_id": "p1"})
    assert r.status_code == 200, r.text
    record = system.decision(r.json()["decision_id"])[0]
    assert record.fallback.startswith("features: defaults")
    assert client.get("/healthz").json()["dependencies"]["online_store"] == "unavailable"
    more = client.post("/v1/events", json={"events": [event(2, kind="purchase", amount=1.0)]})
    assert more.status_code == 200  # stored; folded once Redis is back
    assert more.json()["features"] == "deferred"
    rd.restore()

    def caught_up() -> bool:
        r = client.post("/v1/decide", json={"player_id": "p1"})
        assert r.status_code == 200, r.text
        return system.decision(r.json()["decision_id"])[0].features["purchases_total"] == 2

    _until(caught_up, "the online state never caught up with the log")


def test_events_stored_during_a_redis_cut_reach_the_online_state(
    served: tuple[Offerloop, TestClient, FaultProxy, FaultProxy],
) -> None:
    """Finding 4 of issue 13: during a Redis cut, event batches were answered 503 but stored,
    the client's retries came back as duplicates, and the online state never got them
    (purchases_total 158 online against 204 in the log, for good)."""
    system, client, _, rd = served
    rd.cut()
    for i in range(30):
        r = client.post(
            "/v1/events",
            json={"events": [event(i, player=f"q{i % 3}", kind="purchase", amount=2.0)]},
        )
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 1
    rd.restore()
    online = system.player_features.online

    def folded() -> bool:
        try:
            values = [online.read(f"q{k}", system.clock.now()) for k in range(3)]
        except BackendUnavailable:  # the breaker has not seen Redis back yet
            return False
        return all(v["purchases_total"] == 10 for v in values)

    _until(folded, "events stored during the cut never reached the online state")
    lag = system.metrics.registry.get_sample_value("offerloop_online_lag_events")
    assert lag == 0
    # decisions now serve the same values an offline recomputation gives: no skew
    for k in range(3):
        assert client.post("/v1/decide", json={"player_id": f"q{k}"}).status_code == 200
    system.journal.flush()
    from offerloop.pipeline import skew_report

    report = skew_report(system)
    assert report.ok, report.mismatches
    assert report.decisions == 3


def test_a_decision_lookup_never_waits_for_the_shadow_worker(
    served: tuple[Offerloop, TestClient, FaultProxy, FaultProxy],
) -> None:
    """Finding 3 of issue 13: GET /v1/decisions/{id} waited 5.3 s on the shadow worker, and
    a /healthz sent meanwhile waited too. Here the shadow scorer is blocked outright."""
    system, client, _, _ = served
    gate = threading.Event()
    real = system.decider.shadows.sink.score

    def blocked(items: Any) -> int:
        gate.wait(120)
        return real(items)

    system.decider.shadows.sink.score = blocked  # type: ignore[method-assign]
    try:
        d = client.post("/v1/decide", json={"player_id": "p1"}).json()
        got = client.get(f"/v1/decisions/{d['decision_id']}")
        assert got.status_code == 200
        assert client.get("/healthz").status_code == 200
    finally:
        gate.set()


_CHILD = """
import json, sys
from offerloop import Offerloop, load_settings
from offerloop.events import EventIn

system = Offerloop(load_settings(env={}, **json.loads(sys.argv[1])).for_service())
system.bootstrap(actor="test")
print("up", flush=True)
sys.stdin.readline()  # the test cuts PostgreSQL
r = system.ingest([EventIn(event_id=f"j{i}", player_id="p1", type="session_start",
                           ts="2026-03-02T11:00:00Z") for i in range(5)])
print(r.durable, r.accepted, flush=True)  # acknowledged
sys.stdin.readline()  # killed -9 meanwhile
"""


@pytest.mark.slow
def test_events_journaled_while_postgres_is_down_survive_a_kill_9(tmp_path: Path) -> None:
    """What "acknowledged" means for a journaled batch: on disk before the answer, committed
    by the next process when the process that took it died."""
    import json
    import os
    import signal
    import subprocess
    import sys

    pg = FaultProxy(5432)
    name = unique_name("k")
    local = {
        "data_dir": str(tmp_path / "d"),
        "database_url": PG_URL.replace(":5432", f":{pg.port}"),
        "database_schema": name,
        "database_timeout_seconds": 1.0,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(local)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "up"
        pg.cut()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().split() == ["journal", "5"]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(60)
        for f in (child.stdin, child.stdout):
            if f is not None:
                f.close()
        pg.close()
    again = load_settings(env={}, **{**local, "database_url": PG_URL})
    system = Offerloop(again)  # the next process replays what the dead one journaled
    try:
        stored = [e.event_id for e in system.backend.player_events("p1", 1e12)]
        assert sorted(stored) == [f"j{i}" for i in range(5)]
    finally:
        system.close()
        _drop(again.replace(redis_url=REDIS_URL, redis_prefix=f"{name}:"))
