"""When periodic work runs: an interval (``24h``) or a five-field cron expression (UTC).

Both answer one question, ``next_after(t)``: the first firing time strictly after ``t``
(epoch seconds). Intervals are anchored at the epoch, so ``24h`` fires at 00:00 UTC and a
restarted scheduler keeps the same rhythm. Cron follows the classic (Vixie) rules: fields
minute, hour, day of month, month, day of week (0 or 7 = Sunday); ``*``, lists, ranges and
steps; when both day fields are restricted, a day matching either fires.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from offerloop._errors import InvalidInput

__all__ = ["Cron", "Interval", "Schedule", "parse_schedule"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# minute, hour, day of month, month, day of week
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12))
_DOW = ("day of week", 0, 7)


@dataclass(frozen=True)
class Interval:
    seconds: float
    text: str

    def next_after(self, t: float) -> float:
        return (math.floor(t / self.seconds) + 1) * self.seconds


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday … 6 = Sunday (Python's weekday())
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *
    text: str

    def _day_ok(self, d: datetime) -> bool:
        dom, dow = d.day in self.days, d.weekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, t: float) -> float:
        d = datetime.fromtimestamp(math.floor(t / 60) * 60 + 60, UTC)
        limit = d + timedelta(days=366 * 5)
        while d < limit:
            if d.month not in self.months:
                d = (d.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
            elif not self._day_ok(d):
                d = (d + timedelta(days=1)).replace(hour=0, minute=0)
            elif d.hour not in self.hours:
                d = (d + timedelta(hours=1)).replace(minute=0)
            elif d.minute not in self.minutes:
                d += timedelta(minutes=1)
            else:
                return d.timestamp()
        raise InvalidInput(f"cron expression {self.text!r} never fires")


Schedule = Interval | Cron


def _field(text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", part)
        if not m:
            raise InvalidInput(f"cron {name} field {text!r}: {part!r} is not N, A-B, * or a /step")
        span, step = m.group(1), int(m.group(2) or 1)
        if step < 1:
            raise InvalidInput(f"cron {name} field {text!r}: step must be >= 1")
        if span == "*":
            a, b = lo, hi
        elif "-" in span:
            a, b = (int(x) for x in span.split("-"))
        else:
            a = b = int(span)
            if m.group(2):
                b = hi
        if not lo <= a <= b <= hi:
            raise InvalidInput(f"cron {name} field {text!r}: {part!r} is outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


def parse_schedule(text: str) -> Schedule:
    """``"24h"``, ``"every 30m"`` or a cron expression such as ``"0 3 * * *"``."""
    s = text.strip()
    s = s[len("every ") :].strip() if s.startswith("every ") else s
    if m := _DURATION.match(s):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
        if seconds < 1:
            raise InvalidInput(f"schedule {text!r}: an interval must be at least 1s")
        return Interval(seconds, text)
    parts = s.split()
    if len(parts) != 5:
        raise InvalidInput(
            f"schedule {text!r} is neither an interval (24h, 30m) nor a 5-field cron "
            "expression (minute hour day-of-month month day-of-week, e.g. '0 3 * * *')"
        )
    minutes, hours, days, months = (
        _field(p, name, lo, hi) for p, (name, lo, hi) in zip(parts, _FIELDS, strict=False)
    )
    # cron counts Sunday as 0 (or 7); Python's weekday() counts Monday as 0
    weekdays = frozenset((d - 1) % 7 for d in _field(parts[4], *_DOW))
    cron = Cron(
        minutes,
        hours,
        days,
        months,
        weekdays,
        parts[2].startswith("*"),
        parts[4].startswith("*"),
        text.strip(),
    )
    cron.next_after(0.0)  # raises when it can never fire (e.g. 30 February)
    return cron
