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
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from offerloop.monitoring import Metrics

__all__ = ["TimedH11", "server_config"]


class _HeaderDeadline:
    """A deadline on each request's line and headers, for uvicorn's protocol classes."""

    header_timeout = 10.0
    metrics: Metrics | None = None
    _header_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if _HeaderDeadline.metrics is not None:
            _HeaderDeadline.metrics.connection_timeouts.labels("slow").inc()
        if not self.transport.is_closing():
            self.transport.close()


class TimedH11(_HeaderDeadline, H11Protocol):
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
) -> uvicorn.Config:
    """The uvicorn configuration every offerloop server uses (one server per process: the
    header timeout is set on the protocol class itself, which worker processes import)."""
    set_header_timeout(header_timeout, metrics)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_protocol(),
        timeout_keep_alive=max(1, round(idle_timeout)),
        log_level="warning",
        workers=workers,
        factory=factory,
        # a worker that takes a while to import on a loaded machine is not a dead worker
        timeout_worker_healthcheck=60,
    )


def set_header_timeout(seconds: float, metrics: Metrics | None) -> None:
    """This process's connection header timeout (and where to count its closings)."""
    _HeaderDeadline.header_timeout = seconds
    _HeaderDeadline.metrics = metrics


def nodelay(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
