"""Frequency caps hold under concurrent requests: on both backends with threads, and through
two `offerloop serve` processes sharing PostgreSQL. A decision that would pass a cap draws
again among what is still allowed; when nothing is, the campaign's default answers."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from offerloop import ManualClock, Offerloop, Settings, format_ts
from offerloop._errors import CampaignInvalid
from offerloop.backends._postgres import PostgresBackend
from offerloop.campaigns import default_campaign_path, parse_campaign
from offerloop.decisions import Decision
from offerloop.events import EventIn
from offerloop.policies import ELIGIBLE
from tests.conftest import (
    BACKENDS,
    PG_URL,
    T0,
    drop_service,
    open_system,
    service_env,
    unique_name,
)
from tests.helpers import wait_healthy
from tests.serving.test_two_processes import _start

CAPS = """
[[caps]]
per = "campaign"
max = 3
within = "1h"

[[caps]]
per = "bundle"
max = 1
within = "1d"
"""


def _campaign(tmp_path: Path) -> Path:
    path = tmp_path / "campaign.toml"
    path.write_text(default_campaign_path().read_text() + CAPS)
    return path


@pytest.mark.parametrize(
    ("cap", "message"),
    [
        ('per = "player"\nmax = 1\nwithin = "1h"', "caps\\[0\\].per: must be one of"),
        ('per = "offer"\nmax = 0\nwithin = "1h"', "caps\\[0\\].max: must be a whole number"),
        ('per = "offer"\nmax = 1\nwithin = "soon"', "caps\\[0\\].within: 'soon' is not a"),
        ('per = "offer"\nmax = 1\nwithin = "lifetime"', "caps\\[0\\].within: must be a dur"),
        ('per = "offer"\nmax = 1\nwithin = "1h"\nmin = 2', "caps\\[0\\].*unknown key"),
    ],
)
def test_bad_caps_are_refused_with_their_place(cap: str, message: str) -> None:
    text = default_campaign_path().read_text() + "\n[[caps]]\n" + cap + "\n"
    with pytest.raises(CampaignInvalid, match=message):
        parse_campaign(text)


@pytest.fixture(params=BACKENDS)
def capped(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> Iterator[Offerloop]:
    settings = settings.replace(campaigns=(str(_campaign(tmp_path)),))
    with open_system(request.param, settings, ManualClock(T0)) as system:
        yield system


def _capped(d: Decision) -> bool:
    return "the default" in d.record.fallback


def test_caps_hold_under_concurrent_decisions(capped: Offerloop) -> None:
    system = capped
    c = system.campaign(None)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: system.decide("p1", context={"local_hour": 9}), range(40)))
    shown = [d for d in got if not _capped(d)]
    assert len(shown) == 3  # the campaign's cap: 3 an hour
    bundles = [d.offer.bundle.id for d in shown]
    assert len(set(bundles)) == 3  # and one show per bundle a day
    for d in got:
        allowed = d.record.features[ELIGIBLE]
        assert d.record.offer_id in allowed
        # the release is uniform random: the probability among what was allowed
        assert d.record.propensity == pytest.approx(1.0 / len(allowed))
    assert all(d.record.offer_id == c.default_offer for d in got if _capped(d))
    # an hour later the campaign's cap allows more, but not the bundles shown today
    clock = system.clock
    assert isinstance(clock, ManualClock)
    clock.advance(3601)
    later = [system.decide("p1", context={"local_hour": 9}) for _ in range(5)]
    fresh = [d for d in later if not _capped(d)]
    assert len(fresh) == 3
    assert not {d.offer.bundle.id for d in fresh} & set(bundles)
    other = system.decide("p2", context={"local_hour": 9})  # caps are per player
    assert not _capped(other)


@pytest.mark.needs("postgres", "redis")
@pytest.mark.slow
def test_caps_hold_across_two_service_processes(tmp_path: Path) -> None:
    name = unique_name("caps")
    env = service_env(name)
    env.update(
        OFFERLOOP_DATA_DIR=str(tmp_path / "local"),
        OFFERLOOP_CAMPAIGNS=str(_campaign(tmp_path)),
        OFFERLOOP_LOAD_SHED_MS="0",  # values, not timeouts, are under test
    )
    procs: list[subprocess.Popen[str]] = []
    bases: list[str] = []
    try:
        for _ in range(2):
            proc, base = _start(tmp_path, env)
            procs.append(proc)
            bases.append(base)
            wait_healthy(proc, base)  # the first creates the schema
        answers: list[dict[str, object]] = []
        lock = threading.Lock()

        def ask(i: int) -> None:
            with httpx.Client(base_url=bases[i % 2], timeout=60) as client:
                for _ in range(5):
                    for _attempt in range(100):  # a loaded machine may say "retry shortly"
                        r = client.post("/v1/decide", json={"player_id": "p7"})
                        if r.status_code != 503:
                            break
                        time.sleep(0.1)
                    assert r.status_code == 200, r.text
                    with lock:
                        answers.append(r.json())

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(answers) == 40
        default = parse_campaign(default_campaign_path().read_text()).default_offer

        def offered(rows: list[tuple[str, float]]) -> list[str]:
            return [o for o, p in rows if o != default or p != 1.0]

        # at most 3 an hour for this player, whichever process answered ...
        got = offered([(str(a["offer_id"]), float(a["propensity"])) for a in answers])  # type: ignore[arg-type]
        assert len(got) <= 3
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)  # each commits what it logged on the way out
        # ... and in the log exactly 3 (a request the client gave up on may hold one)
        backend = PostgresBackend(PG_URL, schema=name)
        try:
            logged = [d for d in backend.decisions("spring_sale", 0.0, 1e12) if d.player_id == "p7"]
        finally:
            backend.close()
        shown = offered([(d.offer_id, d.propensity) for d in logged])
        assert len(shown) == 3
        assert len({o.split(":")[0] for o in shown}) == 3  # one a day per bundle
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
        drop_service(name)


def test_capped_decisions_through_both_http_routes(capped: Offerloop) -> None:
    """The HTTP routes (the hot one and the full application's) apply a capped campaign's
    caps (both decide in the ``decide`` work pool: ``serving._hot.decide``)."""
    from fastapi.testclient import TestClient

    from offerloop.serving import create_app

    with TestClient(create_app(capped)) as client:
        hot = [client.post("/v1/decide", json={"player_id": "h1"}) for _ in range(4)]
        # a JSON media type the hot route leaves to the full application
        full = client.post(
            "/v1/decide",
            content=b'{"player_id": "h1"}',
            headers={"content-type": "application/vnd.offerloop+json"},
        )
    assert [r.status_code for r in hot] == [200] * 4
    offered = [r.json() for r in hot if r.json()["propensity"] != 1.0]
    assert len(offered) == 3
    assert full.status_code == 200, full.text
    assert full.json()["propensity"] == 1.0  # the caps hold there too: the default


PURCHASE_CAPS = """
[[caps]]
per = "bundle"
max = 2
within = "7d"
counts = "purchases"
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_purchase_limits_hide_a_bundle_after_its_purchases(
    backend: str, settings: Settings, tmp_path: Path
) -> None:
    """At most 2 purchases of a bundle a week: after two attributed purchases its offers are
    not shown; a client's retry of the same purchase counts once."""
    path = tmp_path / "campaign.toml"
    path.write_text(default_campaign_path().read_text() + PURCHASE_CAPS)
    clock = ManualClock(T0)
    with open_system(backend, settings.replace(campaigns=(str(path),)), clock) as system:

        def buy(i: int) -> str:
            d = system.decide("p1", context={"local_hour": 9})
            clock.advance(60)
            purchase = EventIn(
                event_id=f"buy-{i}",
                player_id="p1",
                type="purchase",
                ts=format_ts(clock.now()),
                properties={"amount": d.offer.price, "decision_id": d.record.decision_id},
            )
            for _ in range(2):  # the client retries: stored and counted once
                system.ingest([purchase])
            return d.offer.bundle.id

        first = buy(0)
        # one purchase (sent twice) is one: the bundle is still offered
        still = [system.decide("p1", context={"local_hour": 9}) for _ in range(60)]
        assert any(d.offer.bundle.id == first for d in still)
        for i in range(1, 500):  # until a second purchase of the same bundle
            if buy(i) == first:
                break
        else:
            pytest.fail(f"{first} was not offered again")
        later = [system.decide("p1", context={"local_hour": 9}) for _ in range(60)]
        assert all(d.offer.bundle.id != first for d in later)
        assert all(d.record.offer_id in d.record.features[ELIGIBLE] for d in later)
        other = [system.decide("p2", context={"local_hour": 9}) for _ in range(60)]
        assert any(d.offer.bundle.id == first for d in other)  # limits are per player
        clock.advance(7 * 86400)  # a week later the bundle is back
        back = [system.decide("p1", context={"local_hour": 9}) for _ in range(60)]
        assert any(d.offer.bundle.id == first for d in back)
