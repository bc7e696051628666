from core.periodic import FixedSchedule

SCHEDULES = (
    # A plain beat task (no approval or pause needed); matching is idempotent and incremental.
    FixedSchedule(
        task="reconciliation.run_daily_matching",
        hour="1",
        minute="30",
        description="Match unmatched bank entries and flag missing bank credits (daily, 01:30, before overdue).",
    ),
)
