"""Schedules: intervals anchored at the epoch, and cron expressions with classic semantics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offerloop import InvalidInput, parse_rfc3339
from offerloop._schedule import Cron, Interval, parse_schedule
from tests.helpers import examples


def _next(expr: str, after: str) -> str:
    t = parse_schedule(expr).next_after(parse_rfc3339(after))
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
        ("0 0 * * 0", "2026-11-26T00:00:00Z", "2026-11-29T00:00:00Z"),  # Sunday as 0
        ("0 0 * * 7", "2026-11-26T00:00:00Z", "2026-11-29T00:00:00Z"),  # and as 7
        # both day fields restricted: either one matching fires (the 13th, or a Friday)
        ("0 0 13 * 5", "2026-11-26T12:00:00Z", "2026-11-27T00:00:00Z"),
        ("0 0 13 * 5", "2026-11-28T12:00:00Z", "2026-12-04T00:00:00Z"),
        ("0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),  # leap day
    ],
)
def test_cron_next_firing(expr: str, after: str, expected: str) -> None:
    assert isinstance(parse_schedule(expr), Cron)
    assert _next(expr, after) == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "cron minute field '61'"),
        ("* 24 * * *", "outside 0-23"),
        ("* * *", "neither an interval"),
        ("a * * * *", "is not N, A-B, * or a /step"),
        ("*/0 * * * *", "step must be >= 1"),
        ("5-1 * * * *", "outside 0-59"),
        ("0 0 30 2 *", "never fires"),
        ("0.5s", "at least 1s"),
        ("tomorrow", "neither an interval"),
    ],
)
def test_bad_schedules_are_named(expr: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("*", r"\*")):
        parse_schedule(expr)


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
    t=st.integers(parse_rfc3339("2020-01-01T00:00:00Z"), parse_rfc3339("2030-01-01T00:00:00Z")),
)
def test_cron_is_the_first_matching_minute_after(minute: str, hour: str, t: int) -> None:
    """Against brute force over every minute (daily expressions: at most a day ahead)."""
    cron = parse_schedule(f"{minute} {hour} * * *")
    assert isinstance(cron, Cron)
    got = cron.next_after(t)
    m = (t // 60 + 1) * 60
    while True:
        d = datetime.fromtimestamp(m, UTC)
        if d.minute in cron.minutes and d.hour in cron.hours:
            break
        m += 60
    assert got == m
