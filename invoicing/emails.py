"""The emails a customer receives about an invoice: the invoice, a reminder, a final notice."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone

from invoicing.documents import invoice_pdf
from invoicing.models import Invoice

INVOICE, REMINDER, FINAL_NOTICE = "invoice", "reminder", "final_notice"

_SUBJECTS = {
    INVOICE: "Invoice {number} from {tenant}",
    REMINDER: "Reminder: invoice {number} from {tenant} is unpaid",
    FINAL_NOTICE: "Final notice: invoice {number} from {tenant}",
}
_OPENINGS = {
    INVOICE: "please find attached invoice {number} from {tenant}.",
    REMINDER: "our records show invoice {number} from {tenant} as unpaid.",
    FINAL_NOTICE: "invoice {number} from {tenant} is still unpaid despite our reminder. Please pay it now.",
}


def message_id(invoice: Invoice, kind: str) -> str:
    """Stable per invoice and kind: a resend after a crash is the same message to the receiver."""
    return f"<{kind}.{invoice.tenant_id}.{invoice.pk}.{invoice.number}@ledgerflow.invalid>"


def send_invoice_document(invoice: Invoice, kind: str = INVOICE) -> None:
    """Send the invoice (as a PDF attachment) or a chaser about it to the customer."""
    customer = invoice.customer
    values = {"number": invoice.number, "tenant": invoice.tenant.name}
    body = "\n".join(
        [
            f"Dear {customer.name},",
            "",
            _OPENINGS[kind].format(**values),
            f"Amount due: {invoice.balance.normalize():f} {invoice.currency}, due on {invoice.due_date.isoformat()}.",
            "",
            "Thank you.",
        ]
    )
    message = EmailMessage(
        subject=_SUBJECTS[kind].format(**values),
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[customer.email],
        headers={"Message-ID": message_id(invoice, kind), "X-Ledgerflow-Invoice": invoice.number},
    )
    message.attach(f"{invoice.number}.pdf", invoice_pdf(invoice), "application/pdf")
    message.send(fail_silently=False)


def email_once(document, send, *, log, no_email_event: str, **log_fields) -> bool:
    """Email a locked document that is due its first email (an issued invoice or consolidated
    invoice) to its customer and stamp `sent_at`, in the caller's transaction. A customer without
    an address gets nothing: logged as `no_email_event`, False, and the document stays unsent."""
    if not document.customer.email:
        log.warning(no_email_event, tenant=document.tenant_id, **log_fields)
        return False
    send(document)
    document.sent_at = timezone.now()
    document.save(update_fields=["sent_at", "updated_at"])
    return True
