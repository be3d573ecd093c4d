"""The wire form of events and its validation: every problem named with its location."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from offerloop._clock import parse_rfc3339
from offerloop._errors import Problem

__all__ = ["KNOWN_TYPES", "EventBatch", "EventIn", "check_event"]

KNOWN_TYPES = ("session_start", "level_up", "purchase", "player_profile")
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ID = r"^\S(.*\S)?$"


class EventIn(BaseModel):
    """One event as the game sends it."""

    model_config = ConfigDict(extra="forbid")

    event_id: StrictStr = Field(
        min_length=1,
        max_length=128,
        pattern=_ID,
        description="Unique id chosen by the sender; retries reuse it.",
    )
    player_id: StrictStr = Field(min_length=1, max_length=128, pattern=_ID)
    type: StrictStr = Field(
        description="session_start, level_up, purchase, player_profile, or any other "
        "lower_snake_case name (stored, not used by built-in features)."
    )
    ts: StrictStr = Field(description="RFC 3339 timestamp with time zone.")
    properties: dict[str, Any] = Field(default_factory=dict)


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def check_event(e: EventIn, loc: str, now: float, max_future: float) -> tuple[float, list[Problem]]:
    """Semantic checks beyond types; returns the parsed timestamp and the problems found."""
    problems: list[Problem] = []
    ts = math.nan
    try:
        ts = parse_rfc3339(e.ts)
    except ValueError as exc:
        problems.append(Problem(f"{loc}.ts", str(exc)))
    else:
        if ts > now + max_future:
            problems.append(Problem(f"{loc}.ts", f"is more than {max_future:g} s in the future"))
    if not _TYPE.match(e.type):
        problems.append(Problem(f"{loc}.type", "must be a lower_snake_case event type"))
    problems.extend(_check_properties(e.type, e.properties, f"{loc}.properties"))
    return ts, problems


def _check_properties(kind: str, props: Mapping[str, Any], loc: str) -> list[Problem]:
    problems: list[Problem] = []
    if kind == "purchase":
        amount = props.get("amount")
        if amount is None:
            problems.append(Problem(f"{loc}.amount", "is required for purchase events"))
        elif not _number(amount) or amount < 0:
            problems.append(Problem(f"{loc}.amount", "must be a finite number >= 0"))
        d = props.get("decision_id")
        if d is not None and (not isinstance(d, str) or not d):
            problems.append(Problem(f"{loc}.decision_id", "must be a non-empty string"))
    elif kind == "level_up":
        level = props.get("level")
        if level is None:
            problems.append(Problem(f"{loc}.level", "is required for level_up events"))
        elif not _number(level) or level < 0:
            problems.append(Problem(f"{loc}.level", "must be a number >= 0"))
    elif kind == "player_profile":
        for k, v in props.items():
            if v is not None and not isinstance(v, str | int | float | bool):
                problems.append(Problem(f"{loc}.{k}", "profile attributes must be scalars"))
            elif isinstance(v, float) and not math.isfinite(v):
                problems.append(Problem(f"{loc}.{k}", "must be finite"))
    return problems
