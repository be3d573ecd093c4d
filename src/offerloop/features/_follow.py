"""The online state follows the event log by itself, so it can never silently diverge from it.

Ingest folds each batch into the online state right after the log stored it (the answer then
reflects the events). That fold can fail after the events are durable (Redis is cut or
stalls, the process dies in between), and on PostgreSQL without Redis every process keeps its
own state of events that other processes stored. :class:`LogFollower` closes every such gap:
it reads the log in sequence order from the store's cursor and folds what the store has not
recorded as folded. Folding is idempotent per event (``features._online``), so an event
folded at ingest and by the follower, or by two processes' followers, counts once.

The cursor (``features._online.Cursor``) lives with the state (in Redis for a Redis store),
so every process sharing a store shares it. Each step:

1. reads the stored events after ``scan`` and those in ``holes``;
2. folds the ones the store has not marked as folded;
3. records new holes: a gap in sequence numbers that a transaction still in flight may fill
   (PostgreSQL commits concurrent transactions out of ``seq`` order;
   ``EventLog.transient_gaps``). A hole is rechecked each step and given up after
   ``horizon`` seconds: longer than any transaction can stay open, as the database's
   statement timeout bounds it;
4. moves the cursor: ``scan`` to the last event read, ``floor`` to just below the oldest
   hole (or to ``scan``), forgetting the marks below the floor.

A step that cannot fold (the store is down) moves nothing; the lag (events in the log not yet
folded, and how long the oldest has waited) grows and is exported as metrics until the store
is back and the follower catches up. ``rebuild`` is the same walk from an empty store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from offerloop._clock import Clock
from offerloop.backends import EventLog, EventRecord
from offerloop.features._online import Cursor, OnlineFeatures

__all__ = ["FollowStep", "LogFollower", "next_holes"]

MAX_HOLES = 10_000  # beyond this many open gaps, the oldest are taken as final


@dataclass(frozen=True)
class FollowStep:
    read: int  # events read from the log
    folded: int  # of them, folded now (the rest were folded already)
    lag_events: int  # events stored after the cursor's scan position
    lag_seconds: float  # how long the oldest event not yet folded has waited (0: none)
    moved: bool  # the cursor moved


def next_holes(
    holes: Mapping[int, float],
    filled: Sequence[EventRecord],
    after: int,
    rows: Sequence[EventRecord],
    now: float,
    horizon: float,
    transient: bool,
) -> dict[int, float]:
    """The gaps in sequence numbers still awaited (seq -> when first seen, wall time) after
    reading ``filled`` (events that filled some of ``holes``) and ``rows`` (the events after
    ``after``): a gap a transaction in flight may still fill (``transient``: the log's
    ``transient_gaps``) is kept until ``horizon`` seconds after it was first seen; at most
    ``MAX_HOLES``, the oldest taken as final. Shared by every reader that follows the log by
    sequence number (the follower, the columnar store)."""
    seen = {e.seq for e in filled}
    out = {s: t for s, t in holes.items() if s not in seen and now - t < horizon}
    prev = after
    for e in rows:
        if transient and e.seq - prev > 1:
            for s in range(max(prev + 1, e.seq - MAX_HOLES), e.seq):
                out[s] = now
        prev = e.seq
    if len(out) > MAX_HOLES:
        out = dict(sorted(out.items())[-MAX_HOLES:])
    return out


class LogFollower:
    def __init__(
        self,
        online: OnlineFeatures,
        log: EventLog,
        clock: Clock,
        *,
        batch: int = 5000,
        horizon: float = 60.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.online = online
        self.log = log
        self.clock = clock
        self.batch = batch
        self.horizon = horizon
        self.wall = wall  # transactions last real seconds, whatever the injected clock says
        self.folded_total = 0

    def step(self) -> FollowStep:
        """One pass over what the log has after the cursor (at most ``batch`` events).
        Raises ``BackendUnavailable`` (nothing moved) if the log or the store is down."""
        store = self.online.store
        c = store.cursor()
        rows = self.log.events_after(c.scan, self.batch)
        filled = self.log.events_at(sorted(c.holes)) if c.holes else []
        candidates = filled + rows
        marked = store.folded([e.seq for e in candidates])
        todo = [e for e in candidates if e.seq not in marked]
        now = self.clock.now()
        if todo:
            self.online.apply(todo, now)
            self.folded_total += len(todo)
        holes = next_holes(
            c.holes, filled, c.scan, rows, self.wall(), self.horizon, self.log.transient_gaps
        )
        scan = rows[-1].seq if rows else c.scan
        new = Cursor(min(holes) - 1 if holes else scan, scan, holes)
        moved = new != c and store.advance(c, new)
        last = self.log.last_event_seq() if len(rows) >= self.batch else scan
        return FollowStep(len(candidates), len(todo), max(0, last - scan), 0.0, moved)

    def folded_run(self, seqs: Sequence[int]) -> bool:
        """Ingest folded these just-stored events: when they are exactly the next run of the
        log after a cursor with no holes, and the log has no transient gaps, move the cursor
        past them without reading them back (the next step would read them only to find
        them folded). Otherwise, or if the cursor moved meanwhile, do nothing: the next step
        reads them as usual. Returns whether the cursor moved."""
        if self.log.transient_gaps or not seqs:
            return False
        store = self.online.store
        c = store.cursor()
        if c.holes or c.floor != c.scan or seqs[0] != c.scan + 1:
            return False
        if seqs[-1] - seqs[0] != len(seqs) - 1:  # distinct and sorted: a run without gaps
            return False
        last = seqs[-1]
        return store.advance(c, Cursor(last, last, {}))

    def lag_of_failure(self) -> tuple[int, float]:
        """The lag while the store cannot be folded into: events after the cursor and the
        age of the oldest of them (the log must answer)."""
        c = self.online.store.cursor()
        oldest = self.log.events_after(c.scan, 1)
        if not oldest:
            return 0, 0.0
        return self.log.last_event_seq() - c.scan, max(
            0.0, self.clock.now() - oldest[0].received_at
        )

    def catch_up(self, max_steps: int = 1_000_000) -> int:
        """Step until the cursor reaches the end of the log; returns events folded."""
        folded = 0
        for _ in range(max_steps):
            s = self.step()
            folded += s.folded
            if s.read < self.batch and not s.lag_events:
                break
        return folded

    def rebuild(self) -> int:
        """Empty the store and fold the whole log; returns how many events were read."""
        self.online.store.clear()
        read = 0
        while True:
            s = self.step()
            read += s.read
            if s.read < self.batch:
                return read
