from core.periodic import FixedSchedule

SCHEDULES = (
    FixedSchedule(
        task="invoicing.mark_overdue_invoices",
        hour="2",
        minute="0",
        description="Open invoices past their due date become overdue (daily, 02:00 business time).",
    ),
)
