"""When periodic work runs: an interval (``24h``) or a cron expression in a time zone.

Both answer one question, ``next_after(t)``: the first firing time strictly after ``t``
(epoch seconds). Intervals are anchored at the epoch, so ``24h`` fires at 00:00 UTC and a
restarted scheduler keeps the same rhythm. Cron expressions are croniter's (a maintained
library, not a parser of our own): five fields (minute, hour, day of month, month, day of
week) with ``*``, lists, ranges, steps and names (``0 3 * * MON-FRI``, ``0 0 1 JAN *``), or a
macro (``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``); Sunday is 0 or 7;
when both day fields are restricted, a day matching either fires (Vixie cron). They are read
in the schedule's IANA time zone (``Europe/Berlin``): ``0 3 * * *`` fires at 03:00 local time
on both sides of a daylight-saving change.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from offerloop._clock import DURATION, DURATION_UNITS
from offerloop._errors import InvalidInput

if TYPE_CHECKING:
    from croniter import croniter

__all__ = ["Cron", "Interval", "Schedule", "parse_schedule", "parse_timezone"]

_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


@dataclass(frozen=True)
class Interval:
    """Every ``seconds``, anchored at the epoch."""

    seconds: float
    text: str

    def next_after(self, t: float) -> float:
        """The first firing strictly after ``t``."""
        return (math.floor(t / self.seconds) + 1) * self.seconds


@dataclass(frozen=True)
class Cron:
    """A cron expression read in ``timezone``."""

    expression: str
    timezone: str
    text: str

    def _iter(self, t: float) -> croniter:
        from croniter import croniter

        return croniter(self.expression, datetime.fromtimestamp(t, ZoneInfo(self.timezone)))

    def next_after(self, t: float) -> float:
        """The first firing strictly after ``t``."""
        from croniter import CroniterBadDateError

        try:
            return float(self._iter(t).get_next(float))
        except CroniterBadDateError:
            raise InvalidInput(f"cron expression {self.text!r} never fires") from None


Schedule = Interval | Cron


_SAME = re.compile(r"^(\w+)-(\w+)(?:/\d+)?$")


def _one_value_ranges(field: str) -> str:
    """``15-15`` as ``15``: croniter 7.0 reads a range of one value as ``*`` (every hour
    instead of 15:00), found by the property test against brute force."""
    parts = []
    for part in field.split(","):
        m = _SAME.match(part)
        parts.append(m.group(1) if m and m.group(1).lower() == m.group(2).lower() else part)
    return ",".join(parts)


_FIELDS = ("minute", "hour", "day of month", "month", "day of week")


def _which_field(expression: str) -> str | None:
    """Which field of a rejected 5-field expression croniter refuses, alone."""
    from croniter import CroniterError, croniter

    parts = expression.split()
    for i, part in enumerate(parts if len(parts) == 5 else ()):
        probe = ["*"] * 5
        probe[i] = part
        try:
            croniter(" ".join(probe))
        except (CroniterError, ValueError):
            return f"the {_FIELDS[i]} field {part!r} is not valid (numbers, names, *, A-B, /step)"
    return None


def parse_timezone(name: str) -> ZoneInfo:
    """An IANA time zone (``UTC``, ``Europe/Berlin``); InvalidInput naming it otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"{name!r} is not an IANA time zone (such as UTC, Europe/Berlin, America/New_York)"
        ) from None


def parse_schedule(text: str, timezone: str = "UTC") -> Schedule:
    """``"24h"``, ``"every 30m"``, a cron expression such as ``"0 3 * * MON"`` or a macro such
    as ``"@daily"``; cron is read in ``timezone``. Raises InvalidInput naming what is wrong."""
    from croniter import CroniterError, croniter

    s = text.strip()
    s = s[len("every ") :].strip() if s.startswith("every ") else s
    if m := DURATION.match(s):
        seconds = float(m.group(1)) * DURATION_UNITS[m.group(2)]
        if seconds < 1:
            raise InvalidInput(f"schedule {text!r}: an interval must be at least 1s")
        return Interval(seconds, text)
    parse_timezone(timezone)
    if not (s.lower() in _MACROS or len(s.split()) == 5):
        raise InvalidInput(
            f"schedule {text!r} is neither an interval (24h, 30m), a 5-field cron expression "
            "(minute hour day-of-month month day-of-week, e.g. '0 3 * * *' or '0 9 * * MON') "
            "nor a macro (" + ", ".join(_MACROS) + ")"
        )
    if not s.startswith("@"):
        s = " ".join(_one_value_ranges(f) for f in s.split())
    try:
        croniter(s)
    except (CroniterError, ValueError) as exc:
        raise InvalidInput(f"schedule {text!r}: {_which_field(s) or exc}") from None
    cron = Cron(s, timezone, text.strip())
    cron.next_after(0.0)  # raises when it can never fire (e.g. 30 February)
    return cron
