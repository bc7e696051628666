from django.conf import settings

from core.periodic import FixedSchedule

SCHEDULES = (
    FixedSchedule(
        task="writeoffs.start_daily_runs",
        hour=str(settings.WRITEOFF_RUN_HOUR),
        minute="0",
        description="Write off unbalanced invoices left by cancellations 1-5 days ago (daily, WRITEOFF_RUN_HOUR business time).",
    ),
)
