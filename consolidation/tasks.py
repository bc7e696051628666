"""Thin tasks: load by id, call one service, decide retry. Each is safe to run twice."""

from celery import shared_task

from consolidation import services
from core.actors import Actor


@shared_task(name="consolidation.start_daily_runs", bind=True)
def start_daily_runs(self) -> int:
    """Start today's consolidation run per tenant; a second beat finds them started."""
    return services.daily_runs_start(actor=Actor.for_task(self.name, self.request.id))


@shared_task(
    name="consolidation.send_consolidated_invoices",
    bind=True,
    autoretry_for=(ConnectionError, TimeoutError, OSError),
    retry_backoff=True,
    max_retries=5,
)
def send_consolidated_invoices(self, consolidated_invoice_ids: list[int]) -> int:
    """Email each issued consolidated invoice of the chunk once (with its PDF). The journey sends
    through its sendInvoices Map state now; this task serves messages enqueued before that."""
    actor = Actor.for_task(self.name, self.request.id)
    return sum(
        services.consolidated_invoice_send(consolidated_invoice_id=pk, actor=actor) for pk in consolidated_invoice_ids
    )


@shared_task(name="consolidation.mark_overdue", bind=True)
def mark_overdue(self) -> int:
    """PENDING consolidated invoices past due become OVERDUE; twice changes nothing more."""
    return services.consolidated_invoices_mark_overdue(actor=Actor.for_task(self.name, self.request.id))
