"""A deadline on each request's line and headers, for uvicorn's protocol classes
(``serving._server`` builds them; ``TimedH11`` and ``TimedHttpTools`` mix this in)."""

from __future__ import annotations

import asyncio

from offerloop._metrics import Metrics

__all__ = ["HeaderDeadline", "set_header_timeout"]


class HeaderDeadline:
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
        if HeaderDeadline.metrics is not None:
            HeaderDeadline.metrics.connection_timeouts.labels("slow").inc()
        if not self.transport.is_closing():
            self.transport.close()


def set_header_timeout(seconds: float, metrics: Metrics | None) -> None:
    """This process's connection header timeout (and where to count its closings)."""
    HeaderDeadline.header_timeout = seconds
    HeaderDeadline.metrics = metrics
