"""The backtest's client retries a 503 after its Retry-After, as a game client should."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from offerloop.sim._remote import MAX_WAIT, RETRIES, post_retrying


class _Busy(BaseHTTPRequestHandler):
    """Answers 503 (Retry-After: 0.2) to the first ``busy`` requests, then 200."""

    busy = 2
    seen = 0

    def do_POST(self) -> None:
        type(self).seen += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        shed = type(self).seen <= type(self).busy
        self.send_response(503 if shed else 200)
        if shed:
            self.send_header("Retry-After", "0.2")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Busy.seen = 0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_a_503_is_retried_after_its_retry_after(server: str) -> None:
    waits: list[float] = []
    _Busy.busy = 2
    with httpx.Client(base_url=server) as http:
        r = post_retrying(http, "/v1/decide", {"player_id": "p"}, sleep=waits.append)
    assert r.status_code == 200
    assert waits == [0.2, 0.2]
    assert _Busy.seen == 3


def test_retries_end(server: str) -> None:
    waits: list[float] = []
    _Busy.busy = 10**6
    with httpx.Client(base_url=server) as http:
        r = post_retrying(http, "/v1/decide", {}, sleep=waits.append)
    assert r.status_code == 503
    assert len(waits) == RETRIES
    assert max(waits) <= MAX_WAIT
