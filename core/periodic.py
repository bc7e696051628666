"""How an app declares a periodic task that every installation runs.

Each app that has one lists it in its own `schedules.py` as `SCHEDULES`; the operations app's
`sync_schedules` (also run by beat when it starts) collects them and keeps exactly one enabled
django-celery-beat entry per declaration. Wall-clock times are in BUSINESS_TIME_ZONE.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FixedSchedule:
    """A periodic task: at a wall-clock time (crontab fields) or every `every_seconds` seconds."""

    task: str
    description: str
    hour: str = "*"
    minute: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    # An interval instead of a crontab: a heartbeat such as the journeys kernel's timer tick.
    every_seconds: float | None = None
    # The beat entry's name; by default the task's, so a re-sync finds the one entry again.
    entry_name: str = ""

    @property
    def name(self) -> str:
        return self.entry_name or self.task
