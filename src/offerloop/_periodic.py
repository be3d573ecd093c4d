"""Background work that repeats: one daemon thread per task, stopped with its owner.

A task that raises is counted (``on_error``) and runs again at its next turn: background work
(catching the online state up with the log, re-reading deployments, polling batch files)
must survive any fault of the dependencies it waits on, and waiting on them is exactly why
it runs here and not on a request's path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Periodic"]


class Periodic:
    def __init__(
        self,
        name: str,
        task: Callable[[], object],
        every: float,
        on_error: Callable[[Exception], None] | None = None,
        first_after: float = 0.0,
    ) -> None:
        self.name = name
        self.task = task
        self.every = every
        self.on_error = on_error
        self.first_after = first_after  # seconds before the first run (0: at once)
        self.runs = 0
        self.errors = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Periodic:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """Run the task now rather than at its next turn."""
        self._wake.set()

    def _loop(self) -> None:
        if self.first_after > 0 and self._wake.wait(self.first_after):
            self._wake.clear()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.task()
                self.runs += 1
            except Exception as exc:  # counted; the next turn tries again
                self.errors += 1
                if self.on_error is not None:
                    self.on_error(exc)
            left = self.every - (time.monotonic() - started)
            if self._wake.wait(max(0.0, left)):
                self._wake.clear()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
