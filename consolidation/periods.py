"""Billing periods: pure date arithmetic on business dates (read in BUSINESS_TIME_ZONE at the edges).

Weekly: the period starts on the most recent start day (1 = Monday … 7 = Sunday) on or before the
date and lasts 7 days. Monthly: it starts on the start day (1–28, so it exists in every month) of
the date's month, or of the previous month when the date is earlier, and ends the day before the
next start day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from dateutil.relativedelta import relativedelta

from consolidation.lifecycle import PeriodType
from invoicing.rules import padded, padded_sql

WEEKLY_START_DAYS = range(1, 8)
# 28 is the last day every month has, so a monthly period never needs clamping.
MONTHLY_START_DAYS = range(1, 29)


@dataclass(frozen=True, slots=True)
class Period:
    type: str
    start: date
    end: date

    @property
    def key(self) -> str:
        """`2026-W04` (ISO week-year and week of the start) or `2026-M01`: the numbering series."""
        if self.type == PeriodType.WEEKLY:
            iso = self.start.isocalendar()
            return f"{iso.year:04d}-W{iso.week:02d}"
        return f"{self.start.year:04d}-M{self.start.month:02d}"


def period_key_sql(period_type: str, period_start: str) -> str:
    """SQL twin of Period.key over SQL expressions for the period's type and start."""
    return (
        f"CASE WHEN {period_type} = '{PeriodType.WEEKLY}' THEN to_char({period_start}, 'IYYY-\"W\"IW') "
        f"ELSE to_char({period_start}, 'YYYY-\"M\"MM') END"
    )


class PeriodOutOfRange(ValueError):
    """A period that would reach past the calendar (before 0001-01-01 or after 9999-12-31)."""


_WEEK_KEY = re.compile(r"([0-9]{4})-W([0-9]{2})")
_MONTH_KEY = re.compile(r"([0-9]{4})-M([0-9]{2})")


def key_start_range(key: str) -> tuple[str, date, date] | None:
    """(period type, first, last) for the start days a period key stands for (`2026-W04`: the
    period starts in ISO week 4 of 2026; `2026-M01`: it starts in January 2026), None for text that
    is not a key, ValueError for a key no calendar has (`9999-W60`, `0000-M13`)."""
    if match := _WEEK_KEY.fullmatch(key):
        year, week = int(match[1]), int(match[2])
        try:
            monday = date.fromisocalendar(year, week, 1)
        except ValueError:
            raise ValueError(
                f"{key} is not an ISO week (weeks run 01 to 52 or 53, years 0001 to 9999)"
            ) from None
        # ISO week 52 of 9999 ends in 10000, which no date holds: the calendar's last day ends it.
        sunday = monday + timedelta(days=6) if monday <= date.max - timedelta(days=6) else date.max
        return PeriodType.WEEKLY, monday, sunday
    if match := _MONTH_KEY.fullmatch(key):
        year, month = int(match[1]), int(match[2])
        if not (1 <= year and 1 <= month <= 12):
            raise ValueError(f"{key} is not a month (months run M01 to M12, years 0001 to 9999)")
        first = date(year, month, 1)
        return PeriodType.MONTHLY, first, first + relativedelta(day=31)
    return None


def start_day_range(period_type: str) -> range:
    return WEEKLY_START_DAYS if period_type == PeriodType.WEEKLY else MONTHLY_START_DAYS


def period_containing(day: date, *, period_type: str, start_day: int) -> Period:
    """The billing period `day` falls in."""
    if start_day not in start_day_range(period_type):
        raise ValueError(f"start day {start_day} is outside {period_type} range")
    try:
        if period_type == PeriodType.WEEKLY:
            start = day - timedelta(days=(day.isoweekday() - start_day) % 7)
            return Period(period_type, start, start + timedelta(days=6))
        start = day.replace(day=start_day)
        if day.day < start_day:
            start = start - relativedelta(months=1)
        return Period(period_type, start, start + relativedelta(months=1) - timedelta(days=1))
    except (OverflowError, ValueError):  # before 0001-01-01 or after 9999-12-31
        raise PeriodOutOfRange(
            f"the {period_type.lower()} period of {day.isoformat()} is outside the calendar"
        ) from None


def ends_on(day: date, *, period_type: str, start_day: int) -> bool:
    """True when `day` is the last day of its period: the next day starts a new one."""
    following = day + timedelta(days=1)
    return (following.isoweekday() if period_type == PeriodType.WEEKLY else following.day) == start_day


# CONS-2026-W04-001: a period's consolidated invoices are few; more digits are kept whole.
CONSOLIDATED_SEQUENCE_WIDTH = 3


def consolidated_number(prefix: str, period: Period, sequence: int) -> str:
    """CONS-2026-W04-001: prefix, period key, sequence per tenant and period (3 digits at least)."""
    return f"{prefix}-{period.key}-{padded(sequence, CONSOLIDATED_SEQUENCE_WIDTH)}"


def consolidated_number_sql(prefix: str, period_key: str, sequence: str) -> str:
    """SQL twin of consolidated_number() over SQL expressions (period_key: see period_key_sql)."""
    return f"{prefix} || '-' || {period_key} || '-' || {padded_sql(sequence, CONSOLIDATED_SEQUENCE_WIDTH)}"
