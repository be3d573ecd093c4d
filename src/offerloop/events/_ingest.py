"""Event ingestion: validate the whole batch, then store it atomically and idempotently."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from offerloop._clock import Clock
from offerloop._errors import InvalidInput, Problem
from offerloop.backends import EventLog, EventRecord
from offerloop.events._schema import EventIn, check_event

__all__ = ["Classify", "Derive", "IngestResult", "ingest", "prepare"]

# verdicts (by event id) for the purchases of a batch that name a decision
Classify = Callable[[Sequence[EventRecord], float], Mapping[str, str]]
# the events offerloop writes with a batch (its records with their verdicts; events._offers)
Derive = Callable[[Sequence[EventRecord]], list[EventRecord]]


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    # the new events (with those offerloop derived from them), for the online feature state
    stored: tuple[EventRecord, ...] = ()
    # the new purchases naming a decision: event id -> verdict (events._attribution)
    attribution: Mapping[str, str] = field(default_factory=dict)
    online: str = "updated"  # or "deferred": folded into the online state from the log later
    durable: str = "database"  # or "journal": the database could not take them; on their way


def ingest(
    log: EventLog,
    events: Sequence[EventIn],
    clock: Clock,
    max_batch: int,
    max_future_seconds: float,
    *,
    earliest: float = -math.inf,
    classify: Classify | None = None,
    derive: Derive | None = None,
) -> IngestResult:
    """All-or-nothing: a batch with any invalid event writes nothing.

    The events are durable in the log when this returns. A retried batch (same event ids) is
    not stored twice: those events count as duplicates. ``classify`` gives each purchase
    that names a decision its attribution verdict, stored with it; ``derive`` adds the
    events offerloop writes for the batch (stored in the same transaction, not counted).
    """
    now = clock.now()
    records = prepare(events, now, max_batch, max_future_seconds, earliest)
    records, verdicts = classified(records, now, classify)
    extra = derive(records) if derive is not None else []
    stored = log.append_events(records + extra)
    return result(records, stored, verdicts)


def prepare(
    events: Sequence[EventIn],
    now: float,
    max_batch: int,
    max_future_seconds: float,
    earliest: float = -math.inf,
) -> list[EventRecord]:
    """The batch as records received at ``now``; ``InvalidInput`` naming every problem."""
    if len(events) > max_batch:
        raise InvalidInput.of(
            [Problem("events", f"has {len(events)} events; at most {max_batch} per batch")]
        )
    records: list[EventRecord] = []
    problems: list[Problem] = []
    for i, e in enumerate(events):
        ts, found = check_event(e, f"events[{i}]", now, max_future_seconds, earliest)
        problems.extend(found)
        if not found:
            records.append(EventRecord(e.event_id, e.player_id, e.type, ts, e.properties, now))
    if problems:
        raise InvalidInput.of(problems)
    return records


def classified(
    records: list[EventRecord], now: float, classify: Classify | None
) -> tuple[list[EventRecord], Mapping[str, str]]:
    """The records with their attribution verdicts, and the verdicts by event id."""
    named = [r for r in records if r.decision_id]
    if not named or classify is None:
        return records, {}
    verdicts = classify(named, now)
    return [replace(r, attribution=verdicts.get(r.event_id, "")) for r in records], verdicts


def result(
    records: Sequence[EventRecord],
    stored: Sequence[EventRecord],
    verdicts: Mapping[str, str],
    **extra: str,
) -> IngestResult:
    """What an ingest answers: new events counted, the rest duplicates (``stored`` may hold
    derived events too: they are folded, not counted)."""
    new = {e.event_id for e in stored}
    accepted = len({r.event_id for r in records} & new)
    return IngestResult(
        accepted,
        len(records) - accepted,
        tuple(stored),
        {k: v for k, v in verdicts.items() if k in new},
        **extra,
    )
