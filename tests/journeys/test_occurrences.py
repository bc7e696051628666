"""Occurrence k = first_run_at + k × interval, computed from the start: no drift, month ends,
leap years and DST in a non-UTC business zone."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from journeys.occurrences import InvalidInterval, due_occurrences, occurrence_at, parse_interval

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_month_ends_do_not_drift():
    first = utc(2026, 1, 31, 6)

    assert [occurrence_at(first, "P1M", k, UTC_ZONE) for k in range(4)] == [
        utc(2026, 1, 31, 6), utc(2026, 2, 28, 6), utc(2026, 3, 31, 6), utc(2026, 4, 30, 6),
    ]


def test_leap_years():
    assert occurrence_at(utc(2028, 1, 31, 6), "P1M", 1, UTC_ZONE) == utc(2028, 2, 29, 6)
    assert occurrence_at(utc(2028, 2, 29, 6), "P1Y", 1, UTC_ZONE) == utc(2029, 2, 28, 6)
    assert occurrence_at(utc(2028, 2, 29, 6), "P1Y", 4, UTC_ZONE) == utc(2032, 2, 29, 6)


def test_calendar_intervals_keep_the_wall_clock_across_dst():
    first = datetime(2026, 3, 28, 5, tzinfo=BERLIN)  # the day before summer time starts

    # P1D stays at 05:00 Berlin time: 04:00 UTC before the change, 03:00 UTC after
    assert occurrence_at(first, "P1D", 1, BERLIN) == utc(2026, 3, 29, 3)
    assert occurrence_at(first, "P1W", 1, BERLIN) == utc(2026, 4, 4, 3)
    # an exact duration is elapsed time: 24 hours later is 06:00 Berlin time
    assert occurrence_at(first, "PT24H", 1, BERLIN) == utc(2026, 3, 29, 4)
    # back to winter time in October
    assert occurrence_at(datetime(2026, 10, 24, 5, tzinfo=BERLIN), "P1D", 1, BERLIN) == utc(2026, 10, 25, 4)


def test_minute_intervals_for_demos():
    first = utc(2026, 11, 24, 10)

    assert occurrence_at(first, "PT1M", 90, UTC_ZONE) == utc(2026, 11, 24, 11, 30)


def test_due_occurrences_never_exceed_max_runs():
    first = utc(2026, 1, 1)

    due = due_occurrences(first, "P1D", start=0, max_runs=3, now=utc(2026, 6, 1), zone=UTC_ZONE)

    assert [k for k, _ in due] == [0, 1, 2]


def test_due_occurrences_start_after_those_already_started():
    due = due_occurrences(utc(2026, 1, 1), "P1D", start=2, max_runs=10, now=utc(2026, 1, 4, 12), zone=UTC_ZONE)

    assert [(k, at) for k, at in due] == [(2, utc(2026, 1, 3)), (3, utc(2026, 1, 4))]


@pytest.mark.parametrize("text", ["", "P", "monthly", "P0D", "PT0S", "-P1D", "P1Q"])
def test_intervals_that_do_not_move_forward_are_refused(text):
    with pytest.raises(InvalidInterval):
        parse_interval(text)
