"""Period arithmetic: every start day, month lengths, leap years, ISO weeks; numbers."""

from datetime import date, timedelta

import pytest

from consolidation.periods import Period, consolidated_number, ends_on, period_containing

WEEKLY, MONTHLY = "WEEKLY", "MONTHLY"


def test_weekly_from_monday_example_of_the_issue():
    # Tuesday 20 Jan 2026 lies in Monday 19 – Sunday 25 Jan 2026
    assert period_containing(date(2026, 1, 20), period_type=WEEKLY, start_day=1) == Period(
        WEEKLY, date(2026, 1, 19), date(2026, 1, 25)
    )


@pytest.mark.parametrize("start_day", range(1, 8))
def test_weekly_period_starts_on_its_start_day_and_lasts_seven_days_for_every_day(start_day):
    for offset in range(21):
        day = date(2026, 1, 1) + timedelta(days=offset)
        period = period_containing(day, period_type=WEEKLY, start_day=start_day)
        assert period.start.isoweekday() == start_day
        assert period.start <= day <= period.end
        assert period.end - period.start == timedelta(days=6)
        assert ends_on(day, period_type=WEEKLY, start_day=start_day) == (day == period.end)


@pytest.mark.parametrize("start_day", range(1, 29))
def test_monthly_periods_tile_the_year_without_gaps_for_every_start_day(start_day):
    day, previous = date(2027, 12, 31), None
    for offset in range(366 * 2):
        day = date(2027, 1, 1) + timedelta(days=offset)
        period = period_containing(day, period_type=MONTHLY, start_day=start_day)
        assert period.start.day == start_day
        assert period.start <= day <= period.end
        assert (period.end + timedelta(days=1)).day == start_day
        if previous is not None and previous != period:
            assert period.start == previous.end + timedelta(days=1)
        assert ends_on(day, period_type=MONTHLY, start_day=start_day) == (day == period.end)
        previous = period


@pytest.mark.parametrize(
    ("day", "start_day", "start", "end"),
    [
        (date(2026, 1, 31), 1, date(2026, 1, 1), date(2026, 1, 31)),
        (date(2026, 2, 28), 1, date(2026, 2, 1), date(2026, 2, 28)),  # 28-day February
        (date(2028, 2, 29), 1, date(2028, 2, 1), date(2028, 2, 29)),  # leap year
        (date(2028, 3, 14), 15, date(2028, 2, 15), date(2028, 3, 14)),  # spans a leap February
        (date(2026, 3, 10), 28, date(2026, 2, 28), date(2026, 3, 27)),  # earlier than start day
        (date(2026, 1, 5), 15, date(2025, 12, 15), date(2026, 1, 14)),  # previous month, previous year
        (date(2026, 4, 30), 1, date(2026, 4, 1), date(2026, 4, 30)),  # 30-day month
    ],
)
def test_monthly_period_examples(day, start_day, start, end):
    assert period_containing(day, period_type=MONTHLY, start_day=start_day) == Period(MONTHLY, start, end)


def test_start_day_outside_its_range_is_refused():
    with pytest.raises(ValueError):
        period_containing(date(2026, 1, 1), period_type=WEEKLY, start_day=8)
    with pytest.raises(ValueError):
        period_containing(date(2026, 1, 1), period_type=MONTHLY, start_day=29)


def test_numbers_use_the_iso_week_of_the_period_start_and_the_month():
    week = period_containing(date(2026, 1, 20), period_type=WEEKLY, start_day=1)
    assert consolidated_number("CONS", week, 1) == "CONS-2026-W04-001"
    # Monday 29 Dec 2025 starts ISO week 1 of 2026
    boundary = period_containing(date(2025, 12, 31), period_type=WEEKLY, start_day=1)
    assert consolidated_number("CONS", boundary, 12) == "CONS-2026-W01-012"
    month = period_containing(date(2026, 1, 31), period_type=MONTHLY, start_day=1)
    assert consolidated_number("ACME", month, 1000) == "ACME-2026-M01-1000"
