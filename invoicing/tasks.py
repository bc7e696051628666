"""Thin tasks: load by id, call one service, decide retry."""

from celery import shared_task

from core.actors import Actor
from invoicing import services


@shared_task(
    name="invoicing.send_invoice_email",
    bind=True,
    autoretry_for=(ConnectionError, TimeoutError, OSError),
    retry_backoff=True,
    # short: a long countdown sits in Redis unacknowledged and is redelivered after the visibility timeout
    retry_backoff_max=120,
    max_retries=5,
)
def send_invoice_email(self, invoice_id: int) -> bool:
    """Email one issued invoice; running it twice sends it once."""
    return services.invoice_send_email(
        invoice_id=invoice_id, actor=Actor.for_task(self.name, self.request.id)
    )


@shared_task(name="invoicing.mark_overdue_invoices", bind=True)
def mark_overdue_invoices(self) -> int:
    """Open invoices past due become overdue; running it twice changes nothing more."""
    return services.invoices_mark_overdue(actor=Actor.for_task(self.name, self.request.id))
