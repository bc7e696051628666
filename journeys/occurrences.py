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
    """An ISO 8601 duration that moves time forward (P1M, P1W, PT1M …), in whole years and months,
    short enough to be added to a date (P99999999Y is not)."""
    try:
        duration = isodate.parse_duration(text)
    except OverflowError as exc:
        raise InvalidInterval(f"{text!r} is too long a duration") from exc
    except (isodate.ISO8601Error, ValueError, TypeError) as exc:
        raise InvalidInterval(f"{text!r} is not an ISO 8601 duration") from exc
    if isinstance(duration, isodate.Duration) and (duration.years % 1 or duration.months % 1):
        raise InvalidInterval(f"{text!r}: years and months must be whole numbers")
    probe = datetime(2001, 1, 1, tzinfo=UTC)
    try:
        moved = probe + duration
    except (ValueError, OverflowError) as exc:
        raise InvalidInterval(f"{text!r} is too long a duration") from exc
    if moved <= probe:
        raise InvalidInterval(f"{text!r} does not move time forward")
    return duration


def check_schedule_fits(first: datetime, interval: str, max_runs: int, zone: ZoneInfo) -> datetime:
    """The last occurrence of the schedule, or InvalidInterval when it falls past what a date holds
    (the year 9999): beat would otherwise fail on that run instead of the request now."""
    try:
        return occurrence_at(first, interval, max_runs - 1, zone)
    except (ValueError, OverflowError) as exc:
        raise InvalidInterval(
            f"run {max_runs} of every {interval} from {first.isoformat()} would fall after the year 9999"
        ) from exc


def add_fits(moment: datetime, duration: str) -> datetime:
    """`moment` + `duration`, or InvalidInterval when that is past what a date holds."""
    delta = parse_interval(duration)
    try:
        return moment + delta
    except (ValueError, OverflowError) as exc:
        raise InvalidInterval(
            f"{duration!r} after {moment.date().isoformat()} falls after the year 9999"
        ) from exc


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
