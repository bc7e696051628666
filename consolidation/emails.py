"""The consolidated invoice email a customer receives, with the PDF attached."""

from django.conf import settings
from django.core.mail import EmailMessage

from consolidation import pdf
from consolidation.models import ConsolidatedInvoice


def send_consolidated_invoice(ci: ConsolidatedInvoice) -> None:
    """Send `ci` to its customer's address through Django's email backend."""
    customer = ci.customer
    body = "\n".join(
        [
            f"Dear {customer.name},",
            "",
            f"please find consolidated invoice {ci.number} from {ci.tenant.name} for "
            f"{ci.period_start.isoformat()} to {ci.period_end.isoformat()}: {ci.invoice_count} invoices.",
            f"Amount due: {ci.total.normalize():f} {ci.currency}, due on {ci.due_date.isoformat()}.",
            "",
            "Thank you.",
        ]
    )
    message = EmailMessage(
        subject=f"Consolidated invoice {ci.number} from {ci.tenant.name}",
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[customer.email],
        headers={"X-Ledgerflow-Consolidated-Invoice": ci.number},
    )
    message.attach(f"{ci.number}.pdf", pdf.render(ci), "application/pdf")
    message.send(fail_silently=False)
