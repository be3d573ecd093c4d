"""A synchronous HTTP client for an app in the same process, without a server or threads.

The simulator and the demo use it: each request is an ASGI call of the real app (routing,
validation, error mapping, middleware, metrics) on one private event loop. It speaks ASGI
itself rather than through an HTTP client library's transport, which cost more per request
than the service's own decision path (about 1.3 ms of 3 in the demo's profile).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message

__all__ = ["InProcessClient", "InProcessResponse"]


class InProcessError(Exception):
    """An HTTP error status, raised by :meth:`InProcessResponse.raise_for_status`."""


class InProcessResponse:
    def __init__(self, status_code: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status_code = status_code
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def raise_for_status(self) -> InProcessResponse:
        if self.status_code >= 400:
            raise InProcessError(f"HTTP {self.status_code}: {self.text[:500]}")
        return self


class InProcessClient:
    """Synchronous requests to an ASGI app of this process, on a private event loop (see the
    module doc); one thread at a time. Close it (or use it as a context manager) when done."""

    def __init__(self, app: ASGIApp, base_url: str = "http://offerloop.local") -> None:
        self._loop = asyncio.new_event_loop()
        self._app = app
        self._host = urlsplit(base_url).netloc or "offerloop.local"

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> InProcessResponse:
        """Send one request (``url``: path and query) through the app and return its response,
        whatever its status; ``json``, if given, is the JSON body."""
        path, _, query = url.partition("?")
        body = b"" if json is None else jsonlib.dumps(json).encode()
        head = [(b"host", self._host.encode())]
        if json is not None:
            head += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
        head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": head,
            "client": ("127.0.0.1", 50000),
            "server": (self._host, 80),
        }
        sent = False
        status = 500
        out_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)  # the body was read; nothing more comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                out_headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        self._loop.run_until_complete(self._app(scope, receive, send))
        return InProcessResponse(status, out_headers, b"".join(chunks))

    def get(self, url: str, **kwargs: Any) -> InProcessResponse:
        """A GET request: see :meth:`request`."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> InProcessResponse:
        """A POST request: see :meth:`request`."""
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        """Close the event loop; the client cannot be used afterwards."""
        self._loop.close()

    def __enter__(self) -> InProcessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
