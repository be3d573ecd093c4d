"""Schedules: intervals anchored at the epoch, and cron expressions (croniter) in a time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offerloop import InvalidInput, parse_rfc3339
from offerloop._schedule import Cron, Interval, parse_schedule
from tests.helpers import examples


def _next(expr: str, after: str, zone: str = "UTC") -> str:
    t = parse_schedule(expr, zone).next_after(parse_rfc3339(after))
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_intervals_are_anchored_at_the_epoch() -> None:
    s = parse_schedule("24h")
    assert isinstance(s, Interval)
    assert _next("24h", "2026-11-26T16:45:00Z") == "2026-11-27T00:00:00Z"
    assert _next("every 30m", "2026-11-26T16:45:00Z") == "2026-11-26T17:00:00Z"
    assert _next("30m", "2026-11-26T17:00:00Z") == "2026-11-26T17:30:00Z"  # strictly after


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("0 3 * * *", "2026-11-26T16:45:00Z", "2026-11-27T03:00:00Z"),
        ("0 3 * * *", "2026-11-26T02:59:30Z", "2026-11-26T03:00:00Z"),
        ("*/15 * * * *", "2026-11-26T16:45:00Z", "2026-11-26T17:00:00Z"),
        ("5,35 9-10 * * *", "2026-11-26T09:40:00Z", "2026-11-26T10:05:00Z"),
        ("0 0 1 * *", "2026-12-15T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("0 9 * * 1-5", "2026-11-27T10:00:00Z", "2026-11-30T09:00:00Z"),  # Fri → Mon
        ("0 9 * * MON-FRI", "2026-11-27T10:00:00Z", "2026-11-30T09:00:00Z"),  # names
        ("0 9 * * MON", "2026-11-26T10:00:00Z", "2026-11-30T09:00:00Z"),
        ("0 0 1 JAN *", "2026-11-26T10:00:00Z", "2027-01-01T00:00:00Z"),
        ("0 0 * * 0", "2026-11-26T00:00:00Z", "2026-11-29T00:00:00Z"),  # Sunday as 0
        ("0 0 * * 7", "2026-11-26T00:00:00Z", "2026-11-29T00:00:00Z"),  # and as 7
        # both day fields restricted: either one matching fires (the 13th, or a Friday)
        ("0 0 13 * 5", "2026-11-26T12:00:00Z", "2026-11-27T00:00:00Z"),
        ("0 0 13 * 5", "2026-11-28T12:00:00Z", "2026-12-04T00:00:00Z"),
        ("0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),  # leap day
        # a range of one value is that value (croniter 7.0 alone reads it as *)
        ("0 15-15 * * *", "2026-11-26T10:00:00Z", "2026-11-26T15:00:00Z"),
        ("53-53 1 * * *", "2026-11-26T10:00:00Z", "2026-11-27T01:53:00Z"),
        ("@daily", "2026-11-26T16:45:00Z", "2026-11-27T00:00:00Z"),
        ("@hourly", "2026-11-26T16:45:00Z", "2026-11-26T17:00:00Z"),
        ("@weekly", "2026-11-26T16:45:00Z", "2026-11-29T00:00:00Z"),  # Sunday midnight
    ],
)
def test_cron_next_firing(expr: str, after: str, expected: str) -> None:
    assert isinstance(parse_schedule(expr), Cron)
    assert _next(expr, after) == expected


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"),  # 03:00 CEST, the morning clocks jump
        ("2026-03-29T12:00:00Z", "2026-03-30T01:00:00Z"),
        ("2026-10-24T12:00:00Z", "2026-10-25T02:00:00Z"),  # 03:00 CET, clocks went back
        ("2026-10-25T12:00:00Z", "2026-10-26T02:00:00Z"),
    ],
)
def test_cron_is_read_in_its_time_zone_across_daylight_saving(after: str, expected: str) -> None:
    assert _next("0 3 * * *", after, "Europe/Berlin") == expected
    fired = parse_schedule("0 3 * * *", "Europe/Berlin").next_after(parse_rfc3339(after))
    assert datetime.fromtimestamp(fired, ZoneInfo("Europe/Berlin")).hour == 3


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "the minute field '61'"),
        ("* 24 * * *", "the hour field '24'"),
        ("* * *", "neither an interval"),
        ("a * * * *", "the minute field 'a'"),
        ("*/0 * * * *", "the minute field '*/0'"),
        ("* * * * FUN", "the day of week field 'FUN'"),
        ("* * * * * *", "neither an interval"),  # no seconds field
        ("0 0 30 2 *", "never fires"),
        ("0.5s", "at least 1s"),
        ("tomorrow", "neither an interval"),
        ("@fortnightly", "neither an interval"),
    ],
)
def test_bad_schedules_are_named(expr: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("*", r"\*")):
        parse_schedule(expr)


def test_an_unknown_time_zone_is_named() -> None:
    with pytest.raises(InvalidInput, match="'Mars/Olympus' is not an IANA time zone"):
        parse_schedule("0 3 * * *", "Mars/Olympus")


def _expand(text: str, lo: int, hi: int) -> set[int]:
    """The test's own reading of the fields the strategy below draws (an oracle that is not
    croniter)."""
    out: set[int] = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        a, b = (lo, hi) if span == "*" else (int(span.split("-")[0]), int(span.split("-")[-1]))
        out.update(range(a, b + 1, int(step or 1)))
    return out


def _field(lo: int, hi: int) -> st.SearchStrategy[str]:
    n = st.integers(lo, hi)
    return st.one_of(
        st.just("*"),
        n.map(str),
        st.tuples(n, n).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.integers(1, 30).map(lambda s: f"*/{s}"),
        st.lists(n, min_size=1, max_size=3).map(lambda xs: ",".join(map(str, xs))),
    )


@settings(max_examples=examples(150), deadline=None)
@given(
    minute=_field(0, 59),
    hour=_field(0, 23),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    t=st.integers(parse_rfc3339("2020-01-01T00:00:00Z"), parse_rfc3339("2030-01-01T00:00:00Z")),
)
def test_cron_is_the_first_matching_minute_after(minute: str, hour: str, zone: str, t: int) -> None:
    """Against brute force over every minute in the zone's local time (daily expressions: at
    most a day ahead, DST days included)."""
    cron = parse_schedule(f"{minute} {hour} * * *", zone)
    assert isinstance(cron, Cron)
    got = cron.next_after(t)
    minutes, hours = _expand(minute, 0, 59), _expand(hour, 0, 23)
    m = (t // 60 + 1) * 60
    while True:
        d = datetime.fromtimestamp(m, ZoneInfo(zone))
        if d.minute in minutes and d.hour in hours:
            break
        m += 60
    assert got == m
