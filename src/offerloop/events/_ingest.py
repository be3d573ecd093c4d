"""Event ingestion: validate the whole batch, then store it atomically and idempotently."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from offerloop._clock import Clock
from offerloop._errors import InvalidInput, Problem
from offerloop.backends import EventLog, EventRecord
from offerloop.events._schema import EventIn, check_event

__all__ = ["IngestResult", "ingest"]


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    stored: tuple[EventRecord, ...] = ()  # the new events, for the online feature state


def ingest(
    log: EventLog,
    events: Sequence[EventIn],
    clock: Clock,
    max_batch: int,
    max_future_seconds: float,
) -> IngestResult:
    """All-or-nothing: a batch with any invalid event writes nothing.

    The events are durable in the log when this returns. A retried batch (same event ids) is
    not stored twice: those events count as duplicates.
    """
    if len(events) > max_batch:
        raise InvalidInput.of(
            [Problem("events", f"has {len(events)} events; at most {max_batch} per batch")]
        )
    now = clock.now()
    records: list[EventRecord] = []
    problems: list[Problem] = []
    for i, e in enumerate(events):
        ts, found = check_event(e, f"events[{i}]", now, max_future_seconds)
        problems.extend(found)
        if not found:
            records.append(EventRecord(e.event_id, e.player_id, e.type, ts, e.properties, now))
    if problems:
        raise InvalidInput.of(problems)
    stored = log.append_events(records)
    return IngestResult(len(stored), len(records) - len(stored), tuple(stored))
