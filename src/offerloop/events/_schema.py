"""The wire form of events and its validation: every problem named with its location."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from offerloop._clock import parse_rfc3339
from offerloop._errors import Problem
from offerloop._limits import MAX_ID, SafeId, check_id, check_properties
from offerloop.backends import OFFER_OUTCOME

__all__ = ["KNOWN_TYPES", "EventBatch", "EventIn", "check_event"]

KNOWN_TYPES = ("session_start", "level_up", "purchase", "player_profile")
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ID = r"^\S(.*\S)?$"
MAX_AMOUNT = 1e9  # a purchase amount above this is a client's mistake, not revenue
MAX_LEVEL = 1e9


class EventIn(BaseModel):
    """One event as the game sends it."""

    model_config = ConfigDict(extra="forbid")

    event_id: SafeId = Field(
        min_length=1,
        max_length=MAX_ID,
        pattern=_ID,
        description="Unique id chosen by the sender; retries reuse it. No control characters.",
    )
    player_id: SafeId = Field(min_length=1, max_length=MAX_ID, pattern=_ID)
    type: StrictStr = Field(
        description="session_start, level_up, purchase, player_profile, or any other "
        "lower_snake_case name (stored, not used by built-in features)."
    )
    ts: StrictStr = Field(max_length=64, description="RFC 3339 timestamp with time zone.")
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description="At most 64 keys and 16 KiB of JSON; strings at most 1024 characters; "
        "integers within ±2^53; values nested at most 4 levels.",
    )


class EventBatch(BaseModel):
    """The body of ``POST /v1/events``: one or more events."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "e1",
                            "player_id": "p42",
                            "type": "level_up",
                            "ts": "2026-11-26T10:05:00Z",
                            "properties": {"level": 12},
                        },
                        {
                            "event_id": "e2",
                            "player_id": "p42",
                            "type": "purchase",
                            "ts": "2026-11-26T10:07:00Z",
                            "properties": {"amount": 9.99, "decision_id": "d019..."},
                        },
                    ]
                }
            ]
        },
    )

    events: list[EventIn] = Field(min_length=1)


def _number(v: Any, top: float) -> bool:
    return (
        isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and 0 <= v <= top
    )


def check_event(
    e: EventIn, loc: str, now: float, max_future: float, earliest: float = -math.inf
) -> tuple[float, list[Problem]]:
    """Semantic checks beyond types; returns the parsed timestamp and the problems found.
    ``earliest``: events stamped before it are refused (a client's clock or encoding bug)."""
    problems: list[Problem] = []
    ts = math.nan
    try:
        ts = parse_rfc3339(e.ts)
    except ValueError as exc:
        problems.append(Problem(f"{loc}.ts", str(exc)))
    else:
        if ts > now + max_future:
            problems.append(Problem(f"{loc}.ts", f"is more than {max_future:g} s in the future"))
        elif ts < earliest:
            problems.append(Problem(f"{loc}.ts", "is before earliest_event_ts"))
    if not _TYPE.match(e.type):
        problems.append(Problem(f"{loc}.type", "must be a lower_snake_case event type"))
    elif e.type == OFFER_OUTCOME:
        problems.append(
            Problem(
                f"{loc}.type",
                f"{OFFER_OUTCOME} events are written by offerloop itself (for each decision "
                "and attributed purchase); send decisions' purchases as purchase events",
            )
        )
    problems.extend(
        Problem(f"{loc}.properties{where}", msg) for where, msg in check_properties(e.properties)
    )
    if not problems:
        problems.extend(_check_properties(e.type, e.properties, f"{loc}.properties"))
    return ts, problems


def _check_properties(kind: str, props: Mapping[str, Any], loc: str) -> list[Problem]:
    problems: list[Problem] = []
    if kind == "purchase":
        amount = props.get("amount")
        if amount is None:
            problems.append(Problem(f"{loc}.amount", "is required for purchase events"))
        elif not _number(amount, MAX_AMOUNT):
            problems.append(
                Problem(f"{loc}.amount", f"must be a finite number from 0 to {MAX_AMOUNT:g}")
            )
        d = props.get("decision_id")
        if d is not None and (not isinstance(d, str) or check_id(d)):
            why = check_id(d) if isinstance(d, str) else "must be a string"
            problems.append(Problem(f"{loc}.decision_id", why or "must be a non-empty string"))
    elif kind == "level_up":
        level = props.get("level")
        if level is None:
            problems.append(Problem(f"{loc}.level", "is required for level_up events"))
        elif not _number(level, MAX_LEVEL):
            problems.append(Problem(f"{loc}.level", f"must be a number from 0 to {MAX_LEVEL:g}"))
    elif kind == "player_profile":
        for k, v in props.items():
            if v is not None and not isinstance(v, str | int | float | bool):
                problems.append(Problem(f"{loc}.{k}", "profile attributes must be scalars"))
            elif isinstance(v, float) and not math.isfinite(v):
                problems.append(Problem(f"{loc}.{k}", "must be finite"))
    return problems
