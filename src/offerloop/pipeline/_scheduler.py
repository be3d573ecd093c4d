"""Running the pipeline on a schedule, in its own process or inside the service.

The scheduler asks the injectable clock what time it is and the schedule when the next run
is due; it never runs two at once (the pipeline lock also keeps other processes out), each
firing time is run once across every scheduler sharing the store (the run records its slot),
and a run that fails is recorded and retried (resumed) at the next firing time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from offerloop._errors import OfferloopError
from offerloop._schedule import Schedule
from offerloop._system import Offerloop
from offerloop.pipeline._runs import run_pipeline

__all__ = ["PipelineScheduler"]

Outcome = dict[str, Any]


class PipelineScheduler:
    """Fires ``run_pipeline`` at the times ``schedule`` gives (first: the next one after now,
    or right away with ``run_now``)."""

    def __init__(
        self,
        system: Offerloop,
        schedule: Schedule,
        campaign: str | None = None,
        *,
        run_now: bool = False,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.system = system
        self.schedule = schedule
        self.campaign = campaign
        self.on_outcome = on_outcome or (lambda _o: None)
        now = system.clock.now()
        self.next_at = now if run_now else schedule.next_after(now)
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> Outcome | None:
        """Run the pipeline if it is due; return what happened (None when not due)."""
        now = self.system.clock.now()
        if now < self.next_at:
            return None
        slot = self.next_at  # the firing this run is for: other schedulers fire for it too
        self.next_at = self.schedule.next_after(now)
        outcome: Outcome
        try:
            doc = run_pipeline(self.system, self.campaign, slot=slot)
            outcome = {"id": doc["id"], "status": doc["status"]}
        except OfferloopError as exc:  # e.g. another process holds the lock
            outcome = {"status": "skipped", "reason": exc.message}
            self.system.metrics.pipeline_runs.labels("skipped").inc()
        except Exception as exc:  # recorded (and counted) by the run; resumed next firing
            outcome = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        self.outcomes.append(outcome)
        self.on_outcome(outcome)
        return outcome

    def run_forever(self, max_runs: int = 0, poll_seconds: float = 30.0) -> None:
        """Block, running when due, until stopped or after ``max_runs`` (0: never)."""
        while not self._stop.is_set():
            if self.tick() is not None and max_runs and len(self.outcomes) >= max_runs:
                return
            wait = max(0.0, min(poll_seconds, self.next_at - self.system.clock.now()))
            self._stop.wait(wait)

    def start(self) -> None:
        """Run in a background daemon thread (inside the service)."""
        self._thread = threading.Thread(
            target=self.run_forever, name="offerloop-pipeline", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop scheduling runs; wait up to ``timeout`` seconds for the thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
