"""Several service processes on one port (``offerloop serve --workers N``).

One Python process decides on one core. With ``--workers N`` uvicorn starts N processes that
share the listening socket; each builds its own :class:`~offerloop.Offerloop` from the same
settings (passed through ``OFFERLOOP_CONFIG`` / ``OFFERLOOP_DATA_DIR``), with its own decision
journal and shadow worker. Their shared state lives where every process sees it: PostgreSQL
for logs, registry and deployments, Redis for the online features; so ``--workers`` needs
``redis_url`` (in-memory online state would differ between the processes).
"""

from __future__ import annotations

import atexit
import gc
import socket

from fastapi import FastAPI

from offerloop._settings import load_settings
from offerloop._system import Offerloop
from offerloop.serving._app import create_app
from offerloop.serving._server import server_config, set_header_timeout

__all__ = ["run_workers", "service_app"]


def service_app() -> FastAPI:
    """The app of one worker process (a uvicorn factory)."""
    settings = load_settings().for_service()
    system = Offerloop(settings)
    system.bootstrap(actor="serve")
    system.player_features.warm()  # Redis already built by the parent: nothing to rebuild
    system.start_background()
    gc.collect()
    gc.freeze()  # as in single-process serve: the start-up heap stays out of full GC passes
    # the journal's last batch, the shadow worker: at uvicorn's graceful shutdown (after it,
    # uvicorn raises the SIGTERM again and the process ends without running atexit), or at
    # any other exit
    atexit.register(system.close)
    # the connection timeouts of this process's server (serving._server)
    set_header_timeout(settings.http_header_timeout_seconds, system.metrics)
    app = create_app(system, service=True)
    app.router.on_shutdown.append(system.close)
    return app


def run_workers(
    host: str, port: int, workers: int, log_level: str = "warning", access_log: bool = False
) -> None:
    """uvicorn's multi-process mode (what ``uvicorn.run(workers=N)`` does), with one change:
    the listening socket gets ``TCP_NODELAY``, which Linux hands on to every accepted
    connection. The single-process server sets it per connection; the worker processes,
    serving a socket passed to them, do not, and a response written as headers then body
    then waits for the client's delayed ACK: 44 ms per keep-alive request, measured."""
    from uvicorn.supervisors import Multiprocess

    settings = load_settings()
    config = server_config(
        "offerloop.serving._workers:service_app",
        host,
        port,
        metrics=None,
        header_timeout=settings.http_header_timeout_seconds,
        idle_timeout=settings.http_idle_timeout_seconds,
        workers=workers,
        factory=True,
        log_level=log_level,
        access_log=access_log,
    )
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[sock]).run()
