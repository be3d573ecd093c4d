"""A TCP proxy that injects real network faults between offerloop and a server.

Put it in front of PostgreSQL or Redis (point ``database_url`` / ``redis_url`` at its port)
and switch it between modes while traffic flows:

* ``restore()``: forward everything (the normal state);
* ``cut()``: drop every open connection and refuse new ones (the server "goes away");
* ``stall()``: accept connections and keep them open, but forward nothing in either
  direction (a server or network that hangs: the worst fault, since nothing fails);
* ``slow(seconds)``: forward each chunk after a delay (a congested link);
* ``reset()``: abort every open connection with a TCP reset, keep accepting new ones.

The tests of ``tests/serving/test_faults.py`` and the long scenarios of ``bench/faults.py``
drive the service through it. It uses threads only; ``close()`` stops them all.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

__all__ = ["FaultProxy"]


class FaultProxy:
    """A TCP proxy listening on ``port`` (127.0.0.1, a free port) in front of
    ``target_host:target_port``, forwarding until told otherwise; see the module doc."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self.mode = "forward"
        self.delay = 0.0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._moving = threading.Event()  # set while bytes may move
        self._moving.set()
        self._listener: socket.socket | None = None
        self._closed = False
        self._listen()

    # -- modes -----------------------------------------------------------------------------
    def restore(self) -> None:
        """Forward everything again (and accept connections, after a cut)."""
        self.mode, self.delay = "forward", 0.0
        self._moving.set()
        if self._listener is None:
            self._listen()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        self.mode = "cut"
        self._moving.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept()
            self._listener.close()
            self._listener = None
        self._drop(reset=False)

    def stall(self) -> None:
        """Keep connections open and accept new ones, but forward nothing."""
        self.mode = "stall"
        self._moving.clear()
        if self._listener is None:
            self._listen()

    def slow(self, seconds: float) -> None:
        """Forward each chunk ``seconds`` late."""
        self.mode, self.delay = "slow", seconds
        self._moving.set()
        if self._listener is None:
            self._listen()

    def reset(self) -> None:
        """Abort open connections with a TCP reset; new connections are forwarded."""
        self._drop(reset=True)
        self.restore()

    def close(self) -> None:
        """Drop every connection and stop listening, for good."""
        self._closed = True
        self.cut()

    # -- plumbing --------------------------------------------------------------------------
    def _listen(self) -> None:
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", self.port))
        lst.listen(128)
        self._listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def _drop(self, reset: bool) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                if reset:  # SO_LINGER 0: close() sends RST instead of FIN
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self, lst: socket.socket) -> None:
        while not self._closed:
            try:
                client, _ = lst.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while not self._moving.wait(0.1):  # stalled: hold the bytes
                    if self._closed:
                        return
                if self.mode == "slow" and self.delay > 0:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


def _main() -> None:
    """``python -m offerloop.testing._proxy PORT``: a proxy in a process of its own (so its
    pumping never competes with the process under test), driven by lines on stdin:
    ``cut``, ``stall``, ``slow SECONDS``, ``reset``, ``restore``; it prints its port, then
    ``ok`` after each command."""
    import sys

    proxy = FaultProxy(int(sys.argv[1]))
    print(proxy.port, flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "slow":
            proxy.slow(float(args[0]))
        else:
            getattr(proxy, cmd)()
        print("ok", flush=True)
    proxy.close()


if __name__ == "__main__":
    _main()
