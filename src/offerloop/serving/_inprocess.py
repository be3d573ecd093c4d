"""A synchronous HTTP client for an app in the same process, without a server or threads.

The simulator and the demo use it: requests go through the real HTTP stack (routing,
validation, error mapping, metrics) on one private event loop, about 1 ms per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
from starlette.types import ASGIApp

__all__ = ["InProcessClient"]


class InProcessClient:
    def __init__(self, app: ASGIApp, base_url: str = "http://offerloop.local") -> None:
        self._loop = asyncio.new_event_loop()
        self._client = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url=base_url
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        return self._loop.run_until_complete(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx2.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx2.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()

    def __enter__(self) -> InProcessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
