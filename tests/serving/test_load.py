"""No request waits on another (issue 13, finding 3): work is bounded per class and shed with
503 + Retry-After beyond it, decide requests are shed when the event loop runs late, slow
readers of the dashboard cannot starve decisions, and slow or idle connections are closed.

Nothing here measures this machine's speed: overload is made deterministic (work that
blocks until the test lets it go, a loop monitor reporting a given delay)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.testclient import TestClient

from offerloop import Offerloop, Overloaded
from offerloop.monitoring import Metrics
from offerloop.serving import create_app
from offerloop.serving._pools import LoopLag, WorkPools
from offerloop.serving._server import server_config


def test_a_full_class_is_shed_at_once_and_the_others_still_run() -> None:
    pools = WorkPools(Metrics(), {"slow": (1, 2, 30.0), "read": (1, 4, 30.0)})
    gate = threading.Event()

    async def scenario() -> None:
        held = [asyncio.create_task(pools.run("slow", gate.wait, 60)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="slow"):
            await pools.run("slow", lambda: 1)  # the third slow request: shed, not queued
        assert await pools.run("read", lambda: 42) == 42  # another class is unaffected
        gate.set()
        await asyncio.gather(*held)
        assert await pools.run("slow", lambda: 7) == 7  # free again

    asyncio.run(scenario())
    assert pools.metrics.shed.labels("slow")._value.get() == 1
    pools.close()


def test_work_that_outlives_its_deadline_answers_503_and_keeps_its_slot() -> None:
    pools = WorkPools(Metrics(), {"write": (1, 1, 0.05)})
    gate = threading.Event()

    async def scenario() -> None:
        from offerloop import BackendUnavailable

        with pytest.raises(BackendUnavailable, match="did not finish"):
            await pools.run("write", gate.wait, 60)  # a store that stalls
        # the stuck work still holds its slot: new work is shed rather than piled behind it
        with pytest.raises(Overloaded):
            await pools.run("write", lambda: 1)
        gate.set()

    asyncio.run(scenario())
    pools.close()


def test_work_still_queued_at_its_deadline_is_never_started() -> None:
    """A request answered 503 while its work waited for a worker: the work is dropped, not
    done later for nobody (a decision logged, a show counted that no client received)."""
    pools = WorkPools(Metrics(), {"decide": (1, 8, 0.2)})
    gate = threading.Event()
    ran: list[int] = []

    async def scenario() -> None:
        from offerloop import BackendUnavailable

        first = asyncio.ensure_future(pools.run("decide", gate.wait, 60))  # holds the worker
        await asyncio.sleep(0.01)
        with pytest.raises(BackendUnavailable):
            await pools.run("decide", ran.append, 1)  # queued behind it until its deadline
        gate.set()
        with pytest.raises(BackendUnavailable):
            await first
        assert await pools.run("decide", ran.append, 2) is None  # the worker is free again

    asyncio.run(scenario())
    pools.close()
    assert ran == [2]


class _Late(LoopLag):
    """A loop monitor that reports the delay the test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.late_ms = 0.0

    def now_ms(self) -> float:
        return self.late_ms


def test_a_burst_that_drains_is_not_shed_a_sustained_delay_is() -> None:
    lag = _Late()
    lag.late_ms = 300.0  # late by 300 ms: late by more than 100 for 200 ms so far
    assert not lag.overloaded(100.0)
    lag.late_ms = 50.0  # drained
    assert not lag.overloaded(100.0)
    lag.late_ms = 700.0  # late by more than 100 for 600 ms: sustained
    assert lag.overloaded(100.0)


def test_decides_are_shed_while_the_loop_runs_late(system: Offerloop) -> None:
    lag = _Late()
    with TestClient(create_app(system, service=True, lag=lag)) as client:
        assert client.post("/v1/decide", json={"player_id": "p1"}).status_code == 200
        lag.late_ms = 700.0  # late by more than the budget for over 5 x the budget: sustained
        r = client.post("/v1/decide", json={"player_id": "p1"})
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "overloaded"
        assert client.get("/healthz").status_code == 200  # only decisions are shed
        lag.late_ms = 0.0
        assert client.post("/v1/decide", json={"player_id": "p1"}).status_code == 200
    shed = system.metrics.registry.get_sample_value(
        "offerloop_shed_requests_total", {"class": "decide"}
    )
    assert shed == 1


def test_a_slow_dashboard_never_holds_up_decisions(system: Offerloop) -> None:
    """An open dashboard cut decide throughput by 40 %: now its work runs in the one-thread
    slow pool, and while it is busy decisions are answered and further dashboards shed."""
    gate = threading.Event()
    started = threading.Event()
    app = create_app(system)
    real = app.state.monitor.drift

    def stuck(*args: object, **kwargs: object) -> object:
        started.set()
        gate.wait(120)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    app.state.monitor.drift = stuck
    with TestClient(app) as client:
        results: list[int] = []
        t = threading.Thread(
            target=lambda: results.append(client.get("/v1/monitoring/drift").status_code)
        )
        t.start()
        assert started.wait(60)
        for i in range(20):
            assert client.post("/v1/decide", json={"player_id": f"p{i}"}).status_code == 200
        gate.set()
        t.join(60)
    assert results == [200]


@contextlib.contextmanager
def _server(system: Offerloop, header_timeout: float) -> Iterator[int]:
    config = server_config(
        create_app(system, service=True),
        "127.0.0.1",
        0,
        metrics=system.metrics,
        header_timeout=header_timeout,
        idle_timeout=1.0,
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


def _closed_by_server(conn: socket.socket) -> bool:
    """Whether the server closes the connection (waits for it, at most a minute)."""
    conn.settimeout(60)
    try:
        return conn.recv(1024) == b""
    except (ConnectionResetError, TimeoutError):
        return False


def test_slow_and_silent_connections_are_closed(system: Offerloop) -> None:
    with _server(system, header_timeout=0.3) as port:
        silent = socket.create_connection(("127.0.0.1", port))
        trickle = socket.create_connection(("127.0.0.1", port))
        trickle.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\n")  # never finishes headers
        assert _closed_by_server(silent)
        assert _closed_by_server(trickle)
        ok = socket.create_connection(("127.0.0.1", port))
        ok.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        ok.settimeout(60)
        assert ok.recv(4096).startswith(b"HTTP/1.1 200")
        for s in (silent, trickle, ok):
            s.close()
    slow = system.metrics.registry.get_sample_value(
        "offerloop_connection_timeouts_total", {"reason": "slow"}
    )
    assert slow is not None
    assert slow >= 2
