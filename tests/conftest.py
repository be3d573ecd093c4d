from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import hypothesis
import pytest
from starlette.testclient import TestClient

from offerloop import ManualClock, Offerloop, Settings, load_settings, parse_rfc3339
from offerloop.serving import create_app

T0 = parse_rfc3339("2026-03-02T12:00:00Z")
# the two ways to run a system; the second needs the real servers and is slow
BACKENDS = ["embedded", pytest.param("postgres+redis", marks=pytest.mark.slow)]

# Hypothesis: `make test` runs every example ("full"); the developer loop (`make quick`)
# sets HYPOTHESIS_PROFILE=dev and runs a fifth of them (tests.helpers.examples)
hypothesis.settings.register_profile("full", deadline=None)
hypothesis.settings.register_profile("dev", deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "full"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # functional tests are about values, not timeouts: a loaded machine may take more than
    # the production 25 ms to answer a Redis read (the fault tests set their own)
    return load_settings(
        env={}, data_dir=str(tmp_path / "data"), decision_seed=1, online_read_timeout_ms=2000
    )


@pytest.fixture(params=BACKENDS)
def system(
    request: pytest.FixtureRequest, settings: Settings, clock: ManualClock
) -> Iterator[Offerloop]:
    """Every test using it runs on the embedded backend and on PostgreSQL + Redis (the real
    servers; a schema and a key prefix of its own, removed afterwards; marked slow, so the
    developer loop runs the embedded one only)."""
    with open_system(request.param, settings, clock) as s:
        yield s


@contextmanager
def open_system(kind: str, settings: Settings, clock: ManualClock) -> Iterator[Offerloop]:
    """A bootstrapped offerloop on ``kind`` ("embedded" or "postgres+redis"), closed (and its
    schema and keys dropped) afterwards."""
    if kind == "postgres+redis":
        name = unique_name("t")
        settings = settings.replace(
            database_url=PG_URL,
            database_schema=name,
            redis_url=REDIS_URL,
            redis_prefix=f"{name}:",
        )
    s = Offerloop(settings, clock)
    s.bootstrap(actor="test")
    try:
        yield s
    finally:
        s.close()
        if kind == "postgres+redis":
            _drop(settings)


def service_env(name: str) -> dict[str, str]:
    """The environment of an `offerloop serve` process on PostgreSQL + Redis, in a schema and
    key prefix of its own (and none of the caller's OFFERLOOP_ settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    env.update(
        OFFERLOOP_DATABASE_URL=PG_URL,
        OFFERLOOP_DATABASE_SCHEMA=name,
        OFFERLOOP_REDIS_URL=REDIS_URL,
        OFFERLOOP_REDIS_PREFIX=f"{name}:",
        # values, not timeouts, are under test: a loaded machine may be slower than 25 ms
        OFFERLOOP_ONLINE_READ_TIMEOUT_MS="2000",
    )
    return env


def drop_service(name: str) -> None:
    """Drop the schema and keys of the `offerloop serve` processes started with
    :func:`service_env` ``(name)``."""
    _drop(
        load_settings(
            env={},
            database_url=PG_URL,
            database_schema=name,
            redis_url=REDIS_URL,
            redis_prefix=f"{name}:",
        )
    )


def _drop(settings: Settings) -> None:
    import psycopg
    import redis

    with psycopg.connect(settings.database_url, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')
    r = redis.Redis.from_url(settings.redis_url)
    keys = list(r.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
    if keys:
        r.unlink(*keys)
    r.close()


@pytest.fixture
def client(system: Offerloop) -> Iterator[TestClient]:
    with TestClient(create_app(system)) as c:
        yield c


def event(
    i: int,
    player: str = "p1",
    kind: str = "session_start",
    ts: str = "2026-03-02T11:00:00Z",
    **props: object,
) -> dict[str, object]:
    return {"event_id": f"e{i}", "player_id": player, "type": kind, "ts": ts, "properties": props}


# The real servers every backend test talks to (never mocks); .ci/run starts them if needed.
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")


def unique_name(prefix: str) -> str:
    """A schema or key-prefix name no other test (or concurrent run) uses."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


# -- the servers tests need, checked once: a clear skip (or, in CI, a clear failure) when one
# is not answering, instead of a cascade of connection errors
SERVICES = {"postgres": PG_URL, "redis": REDIS_URL, "nats": NATS_URL}
_HOW = {
    "postgres": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "redis": "redis-server --daemonize yes --port 6379 --save '' --appendonly no",
    "nats": "nats-server -js -a 127.0.0.1 -p 4222 -sd /tmp/nats &",
}


def _answers(url: str) -> bool:
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 0), timeout=2):
            return True
    except OSError:
        return False


def _needs(item: pytest.Item) -> set[str]:
    out: set[str] = set()
    for mark in item.iter_markers("needs"):
        out.update(mark.args)
    params = getattr(getattr(item, "callspec", None), "params", {})
    for value in params.values():
        if value == "postgres+redis":
            out.update(("postgres", "redis"))
        elif value == "postgres":
            out.add("postgres")
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = {name for name, url in SERVICES.items() if not _answers(url)}
    if not missing:
        return
    why = "; ".join(f"{n} at {SERVICES[n]} does not answer (start it: {_HOW[n]})" for n in missing)
    if os.environ.get("OFFERLOOP_TEST_REQUIRE_SERVICES"):
        raise pytest.UsageError(f"tests need their servers: {why}")
    for item in items:
        if _needs(item) & missing:
            item.add_marker(pytest.mark.skip(reason=f"needs {why}"))
