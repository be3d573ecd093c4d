"""Time, injected: every component asks a :class:`Clock`, never ``datetime.now()`` directly.

Timestamps inside offerloop are floats: seconds since the Unix epoch, UTC. The API speaks
RFC 3339 and converts at the boundary (:func:`parse_rfc3339`, :func:`format_ts`).
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = [
    "DURATION",
    "DURATION_UNITS",
    "LIFETIME",
    "Clock",
    "ManualClock",
    "SystemClock",
    "clock_of",
    "format_ts",
    "parse_duration",
    "parse_rfc3339",
    "parse_time",
]

LIFETIME = math.inf
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")  # a number and a unit


@functools.cache  # pure, and read on every online lookup of a windowed feature
def parse_duration(text: str) -> float:
    """``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"2w"`` → seconds; ``"lifetime"`` → inf."""
    if text == "lifetime":
        return LIFETIME
    m = DURATION.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 1h, 24h, 7d, 30d or lifetime")
    return float(m.group(1)) * DURATION_UNITS[m.group(2)]


class Clock(Protocol):
    """Anything with :meth:`now`: where every component reads the time."""

    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        """The wall-clock time, in seconds since the epoch (UTC)."""
        return time.time()


class ManualClock:
    """A clock that only moves when told: simulated days run in seconds."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """The time it was last set or moved to."""
        return self._now

    def set(self, ts: float) -> None:
        """Set the time, earlier or later (:meth:`move_to` refuses to go back)."""
        with self._lock:
            self._now = float(ts)

    def advance(self, seconds: float) -> float:
        """Move the time by ``seconds`` and return the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def move_to(self, ts: float) -> float:
        """Forward only: a clock that went back would reorder the logs."""
        with self._lock:
            if ts < self._now:
                raise ValueError(
                    f"the clock only moves forward: it is {format_ts(self._now)}, "
                    f"{format_ts(ts)} is earlier"
                )
            self._now = float(ts)
            return self._now


def clock_of(spec: str) -> Clock:
    """The clock a setting names: ``system`` (the wall clock), ``manual`` (starts at the
    wall-clock time, then moves only when told) or ``manual:<RFC 3339 time>``."""
    kind, _, start = spec.partition(":")
    if kind == "system" and not start:
        return SystemClock()
    if kind == "manual":
        return ManualClock(parse_rfc3339(start) if start else time.time())
    raise ValueError("must be 'system', 'manual' or 'manual:<RFC 3339 time>'")


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text: str) -> float:
    """Parse an RFC 3339 timestamp (a time zone is required); raise ValueError otherwise."""
    if not _RFC3339.match(text):
        raise ValueError(
            "must be an RFC 3339 timestamp with a time zone, e.g. 2026-01-31T12:00:00Z"
        )
    norm = text.replace("z", "Z").replace("Z", "+00:00").replace("t", "T").replace(" ", "T")
    # Python's fromisoformat takes at most 6 fractional digits.
    m = re.match(r"^(.*?\.\d{6})\d+(.*)$", norm)
    if m:
        norm = m.group(1) + m.group(2)
    try:
        return datetime.fromisoformat(norm).timestamp()
    except ValueError as exc:
        raise ValueError(f"not a valid date or time: {exc}") from exc


def parse_time(text: str, *, end_of_day: bool = False) -> float:
    """A point in time a person types: an RFC 3339 timestamp, or a date ``YYYY-MM-DD`` (UTC
    midnight; with ``end_of_day``, the midnight after it, so that a range ending on a date
    includes that day). ValueError otherwise."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
        except ValueError as exc:
            raise ValueError(f"not a valid date: {exc}") from exc
        return day + (86400.0 if end_of_day else 0.0)
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ValueError(
            "must be a date like 2026-03-02 or an RFC 3339 timestamp like 2026-03-02T12:00:00Z"
        ) from None


def format_ts(ts: float) -> str:
    """Format epoch seconds as RFC 3339 UTC with millisecond precision."""
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
