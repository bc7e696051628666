from django.conf import settings

from core.periodic import FixedSchedule

SCHEDULES = (
    FixedSchedule(
        task="consolidation.start_daily_runs",
        hour=str(settings.CONSOLIDATION_RUN_HOUR),
        minute="0",
        description="Consolidate the invoices of customers whose billing period ends today (daily, business time).",
    ),
    FixedSchedule(
        task="consolidation.mark_overdue",
        hour="2",
        minute="5",
        description="Consolidated invoices past their due date become overdue (daily, 02:05 business time).",
    ),
)
