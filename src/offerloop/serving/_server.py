"""The HTTP server: uvicorn, with a timeout on every stage of a connection.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) but lets a connection
take as long as it likes to send a request's line and headers, so a client that opens
connections and trickles bytes (or sends nothing) holds them for ever. The protocol classes
here (``TimedH11``, or ``TimedHttpTools`` where httptools is installed) add that timeout:
from a connection's opening, or a request's first byte, the request line and headers must be
complete within ``header_timeout`` seconds, or the connection is closed and counted
(``offerloop_connection_timeouts_total{reason="slow"}``). The body has its own timeout
between chunks (``serving._edge``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import socket
from typing import Any, NoReturn

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from offerloop._metrics import Metrics
from offerloop.serving._deadline import HeaderDeadline, set_header_timeout

__all__ = ["TimedH11", "run_until_stopped", "server_config", "set_header_timeout"]


class TimedH11(HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers: armed when a
    connection opens and when the first bytes of a request arrive, cleared once the request
    is being served."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a request is closed too

    def data_received(self, data: bytes) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self._header_timer is None:
            self._arm()
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # the headers are in: the request is being served

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def _protocol() -> type[asyncio.Protocol]:
    """The protocol class uvicorn would pick ("auto": httptools if installed), timed."""
    if importlib.util.find_spec("httptools") is None:
        return TimedH11
    from offerloop.serving._server_httptools import TimedHttpTools

    return TimedHttpTools


def server_config(
    app: Any,
    host: str,
    port: int,
    *,
    metrics: Metrics | None,
    header_timeout: float,
    idle_timeout: float,
    workers: int | None = None,
    factory: bool = False,
    log_level: str = "warning",
    access_log: bool = False,
) -> uvicorn.Config:
    """The uvicorn configuration every offerloop server uses (one server per process: the
    header timeout is set on the protocol class itself, which worker processes import).
    ``access_log``: a line per request (client, method, path, status) on stdout, uvicorn's
    convention; everything else is logged on stderr."""
    set_header_timeout(header_timeout, metrics)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_protocol(),
        timeout_keep_alive=max(1, round(idle_timeout)),
        log_level=log_level,
        access_log=access_log,
        workers=workers,
        factory=factory,
        # a worker that takes a while to import on a loaded machine is not a dead worker
        timeout_worker_healthcheck=60,
    )


def nodelay(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _stop(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(0)


def run_until_stopped(config: uvicorn.Config) -> None:
    """Serve until SIGTERM or SIGINT, then return after uvicorn's graceful shutdown, so the
    caller's cleanup runs (the journal's last batch, the online state's snapshot, the shadow
    worker). uvicorn raises the signal again once it has shut down, with the handler that was
    in place before it started: by default SIGTERM would then kill the process on the spot,
    skipping every ``finally``. With this handler the signal ends the serving as a
    ``SystemExit(0)``, caught here."""
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.Server(config).run()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
