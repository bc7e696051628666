"""The kernel's heartbeats: durable timers are rows with due_at, and stalled steps are handed on;
these two beat entries look for both. Their entry names are the ones installations already have."""

from core.periodic import FixedSchedule

SCHEDULES = (
    FixedSchedule(
        task="journeys.fire_due_timers",
        every_seconds=5.0,
        entry_name="journeys: fire due timers",
        description="Resume journey runs whose durable timer is due (every 5 s).",
    ),
    FixedSchedule(
        task="journeys.recover_stalled_runs",
        every_seconds=30.0,
        entry_name="journeys: recover stalled runs",
        description="Hand on journey steps whose worker stopped renewing its lease (every 30 s).",
    ),
)
