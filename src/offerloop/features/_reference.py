"""The reference engine: a plain fold over one player's events, as of a moment.

Slow and obviously right: the equality tests compare the online and offline engines with it,
and the ``--feature-delay`` demo uses it to serve deliberately stale values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from offerloop.backends import EventRecord
from offerloop.features._defs import (
    _UNITS,
    Aggregate,
    Context,
    FeatureSet,
    FeatureValue,
    Profile,
    SinceLast,
)
from offerloop.features._values import as_number, as_string, distinct_key, matches

__all__ = ["aggregate_values", "reference_features"]


def reference_features(
    fs: FeatureSet,
    events: Iterable[EventRecord],
    as_of: float,
    context: Mapping[str, Any] | None = None,
    external: Mapping[str, FeatureValue] | None = None,
) -> dict[str, FeatureValue]:
    """Every feature of ``fs`` from the events known at ``as_of`` (``ts`` and ``received_at``
    both ``<= as_of``); ``external`` supplies sql/batch values, ``context`` the request's."""
    seen: set[str] = set()
    known: list[EventRecord] = []
    for e in sorted(events, key=lambda e: (e.received_at, e.event_id)):
        if e.event_id in seen:
            continue  # the log keeps the first copy of an event id
        seen.add(e.event_id)
        if e.ts <= as_of and e.received_at <= as_of:
            known.append(e)
    known.sort(key=lambda e: (e.ts, e.event_id))
    context = context or {}
    external = external or {}
    out: dict[str, FeatureValue] = {}
    for f in fs:
        if isinstance(f, Profile):
            value: Any = None
            for e in known:
                if e.type == "player_profile":
                    v = e.properties.get(f.attribute)
                    if (as_string(v) if f.type == "category" else as_number(v)) is not None:
                        value = v
            out[f.name] = f.coerce(value)
        elif isinstance(f, Aggregate):
            lo = as_of - f.seconds
            rows = [
                e
                for e in known
                if e.type == f.event and e.ts >= lo and matches(e.properties, f.where)
            ]
            out[f.name] = f.coerce(aggregate_values(f, [e.properties for e in rows]))
        elif isinstance(f, SinceLast):
            last = max(
                (e.ts for e in known if e.type == f.event and matches(e.properties, f.where)),
                default=None,
            )
            out[f.name] = f.default if last is None else (as_of - last) / _UNITS[f.unit]
        elif isinstance(f, Context):
            out[f.name] = f.coerce(context.get(f.key))
        else:
            out[f.name] = f.coerce(external.get(f.name))
    return out


def aggregate_values(f: Aggregate, props: list[Mapping[str, Any]]) -> Any:
    """``f.agg`` over property dicts in (ts, event_id) order; None when there is nothing."""
    if f.agg == "count":
        return len(props) if props else None
    raw = [p.get(f.property or "") for p in props]
    if f.agg == "distinct_count":
        keys = {k for k in map(distinct_key, raw) if k is not None}
        return len(keys) if keys else None
    if f.agg == "last":
        pick = as_string if f.type == "category" else as_number
        vals = [x for x in map(pick, raw) if x is not None]
        return vals[-1] if vals else None
    nums = [x for x in map(as_number, raw) if x is not None]
    if not nums:
        return None
    if f.agg == "sum":
        return sum(nums)
    if f.agg == "mean":
        return sum(nums) / len(nums)
    return min(nums) if f.agg == "min" else max(nums)
