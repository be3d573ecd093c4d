"""offerloop.client against a real `offerloop serve` process (and a TCP proxy that injects
real network faults in front of it): decisions, events in batches, purchases attributed,
retries with the same ids, the fallback offer, errors with the service's words."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from offerloop.client import (
    ApiError,
    AsyncOfferloopClient,
    Decision,
    OfferloopClient,
    Unavailable,
)
from offerloop.testing import FaultProxy
from tests.helpers import wait_healthy

pytestmark = pytest.mark.slow  # a real server process
# the deadlines below are bounds for a loaded machine, not speeds: the service must answer
PATIENT = {"decide_timeout": 60.0, "timeout": 60.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running `offerloop serve` on a free port (embedded store, its own data directory)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    data = tmp_path_factory.mktemp("client") / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "offerloop", "serve", "--port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url)
        yield url
    finally:
        proc.terminate()
        proc.wait(60)


def test_decide_events_in_batches_and_a_purchase_attributed(service: str) -> None:
    with OfferloopClient(service, **PATIENT) as client:
        assert client.health()["status"] == "ok"
        (campaign,) = client.campaigns()
        d = client.decide("p-client", context={"local_hour": 20})
        assert isinstance(d, Decision)
        assert not d.fallback
        assert d.offer_id in [o["offer_id"] for o in campaign["offers"]]
        assert d.decision_id is not None
        assert 0 < (d.propensity or 0) <= 1
        events = [
            {"player_id": f"p{i % 40}", "type": "session_start", "ts": "2026-11-26T10:00:00Z"}
            for i in range(2500)
        ]
        sent = client.send_events(events)
        assert (sent.batches, sent.accepted, sent.duplicates) == (3, 2500, 0)
        bought = client.send_events([dict(d.purchase(), player_id="p-client")])
        assert bought.attribution == {next(iter(bought.attribution)): "attributed"}
        assert client.decision(d.decision_id)["revenue"] == d.price


def test_a_refused_request_raises_with_the_services_words(service: str) -> None:
    with OfferloopClient(service, **PATIENT) as client:
        with pytest.raises(ApiError) as err:
            client.send_events([{"player_id": "p", "type": "purchase", "ts": "yesterday"}])
        assert err.value.status == 422
        assert any("ts" in p["location"] for p in err.value.problems)
        with pytest.raises(ApiError) as missing:
            client.decide("p", campaign="no_such_campaign")
        assert missing.value.status == 404


def test_a_batch_whose_answer_was_lost_is_sent_again_with_the_same_ids(service: str) -> None:
    """The proxy stalls: the service stores the batch but its answer never arrives; the
    client times out and sends the same events again once the network is back, and the
    service counts them as duplicates, not twice."""
    port = int(service.rsplit(":", 1)[1])
    proxy = FaultProxy(port)
    try:
        with OfferloopClient(f"http://127.0.0.1:{proxy.port}", timeout=1.0, retries=0) as c:
            events = [
                {
                    "event_id": f"lost-{i}",
                    "player_id": "p-lost",
                    "type": "session_start",
                    "ts": "2026-11-26T10:00:00Z",
                }
                for i in range(10)
            ]
            proxy.slow(3.0)  # the request gets through late; the answer later still
            with pytest.raises(Unavailable):
                c.send_events(events)
        proxy.restore()
        with OfferloopClient(f"http://127.0.0.1:{proxy.port}", **PATIENT) as again:
            r = again.send_events(events)
        assert r.accepted + r.duplicates == 10
        with OfferloopClient(service, **PATIENT) as direct:
            third = direct.send_events(events)
        assert (third.accepted, third.duplicates) == (0, 10)  # stored once, whatever happened
    finally:
        proxy.close()


def test_no_service_means_the_fallback_offer_and_nothing_logged() -> None:
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    with OfferloopClient(url, retries=1, backoff=0.0, fallback_offer="starter:discount") as c:
        d = c.decide("p1")
        assert (d.offer_id, d.fallback, d.decision_id) == ("starter:discount", True, None)
        with pytest.raises(ValueError, match="not logged"):
            d.purchase()
        with pytest.raises(Unavailable):
            c.send_events(
                [{"player_id": "p1", "type": "session_start", "ts": "2026-11-26T10:00:00Z"}]
            )
    with OfferloopClient(url, retries=0) as bare, pytest.raises(Unavailable):
        bare.decide("p1")


def test_the_async_client_does_the_same(service: str) -> None:
    async def go() -> tuple[Decision, int, dict[str, object]]:
        async with AsyncOfferloopClient(service, **PATIENT) as client:
            d = await client.decide("p-async")
            sent = await client.send_events(
                [
                    {
                        "player_id": "p-async",
                        "type": "level_up",
                        "ts": "2026-11-26T10:00:00Z",
                        "properties": {"level": 3},
                    }
                ]
                * 3
            )
            assert d.decision_id is not None
            return d, sent.accepted, await client.decision(d.decision_id)

    d, accepted, logged = asyncio.run(go())
    assert not d.fallback
    assert accepted == 3  # three events, three fresh ids
    assert logged["offer_id"] == d.offer_id
