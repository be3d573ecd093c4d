"""Waiting for a started service process (tests and benchmarks start real `offerloop serve`
processes)."""

from __future__ import annotations

import time
from typing import Protocol

import httpx

__all__ = ["wait_healthy"]


class _Process(Protocol):
    def poll(self) -> int | None: ...


def wait_healthy(proc: _Process, base: str, seconds: float = 180.0) -> None:
    """Until the service at ``base`` (started as ``proc``) answers its health check.
    ``seconds`` is an upper bound for a loaded machine, not a speed. Raises ``RuntimeError``
    if the process exits or does not come up in time."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the service exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service did not come up within {seconds:g} s")
        time.sleep(0.1)
