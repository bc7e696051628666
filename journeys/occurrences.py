"""Schedule arithmetic: occurrence k of a schedule is first_run_at + k × interval, computed from the
start every time (31 Jan + P1M → 28 Feb → 31 Mar, no drift).

Calendar parts of the interval (years, months, weeks, days) move the wall-clock date in the
business time zone, so a daily run stays at 05:00 across a DST change; time parts (hours,
minutes, seconds) are exact elapsed time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import isodate
from dateutil.relativedelta import relativedelta


class InvalidInterval(ValueError):
    pass


def parse_interval(text: str) -> isodate.Duration | timedelta:
    """An ISO 8601 duration that moves time forward (P1M, P1W, PT1M …)."""
    try:
        duration = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError, TypeError) as exc:
        raise InvalidInterval(f"{text!r} is not an ISO 8601 duration") from exc
    probe = datetime(2001, 1, 1, tzinfo=UTC)
    if probe + duration <= probe:
        raise InvalidInterval(f"{text!r} does not move time forward")
    return duration


def _parts(text: str) -> tuple[relativedelta, timedelta]:
    """(calendar part, exact part), split on the ISO 'T': timedelta alone cannot tell P1D from PT24H."""
    date_part, _, time_part = text.upper().partition("T")
    calendar, exact = relativedelta(), timedelta()
    if date_part not in ("P", ""):
        parsed = isodate.parse_duration(date_part)
        if isinstance(parsed, isodate.Duration):
            calendar = relativedelta(years=int(parsed.years), months=int(parsed.months), days=parsed.tdelta.days)
        else:
            calendar = relativedelta(days=parsed.days)
    if time_part:
        exact = isodate.parse_duration("PT" + time_part)
        if isinstance(exact, isodate.Duration):
            exact = exact.tdelta
    return calendar, exact


def occurrence_at(first: datetime, interval: str, k: int, zone: ZoneInfo) -> datetime:
    """The k-th occurrence (k = 0 is `first`) as an aware UTC datetime."""
    parse_interval(interval)
    calendar, exact = _parts(interval)
    local = first.astimezone(zone).replace(tzinfo=None)
    moved = local + relativedelta(
        years=calendar.years * k, months=calendar.months * k, days=calendar.days * k
    )
    # Wall-clock time in the zone, then exact elapsed time; fold=0 picks the first of an ambiguous hour.
    return moved.replace(tzinfo=zone).astimezone(UTC) + exact * k


def due_occurrences(first: datetime, interval: str, *, start: int, max_runs: int, now: datetime, zone: ZoneInfo) -> list[tuple[int, datetime]]:
    """Occurrences from index `start` that are due at `now`, never beyond max_runs."""
    due = []
    k = start
    while k < max_runs:
        at = occurrence_at(first, interval, k, zone)
        if at > now:
            break
        due.append((k, at))
        k += 1
    return due
