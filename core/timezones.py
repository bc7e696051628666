"""The business time zone: where "today", billing periods and schedules are read."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone


def business_zone() -> ZoneInfo:
    return ZoneInfo(settings.BUSINESS_TIME_ZONE)


def business_today(now: datetime | None = None) -> date:
    """The calendar date in the business time zone at `now` (default: now)."""
    return (now or timezone.now()).astimezone(business_zone()).date()
