"""The invoice email a customer receives."""

from django.conf import settings
from django.core.mail import EmailMessage

from invoicing.models import Invoice


def send_invoice(invoice: Invoice) -> None:
    """Send `invoice` to its customer's address through Django's email backend."""
    customer = invoice.customer
    lines = [
        f"Dear {customer.name},",
        "",
        f"please find invoice {invoice.number} from {invoice.tenant.name}.",
        f"Amount due: {invoice.balance.normalize():f} {invoice.currency}, due on {invoice.due_date.isoformat()}.",
        "",
        "Thank you.",
    ]
    message = EmailMessage(
        subject=f"Invoice {invoice.number} from {invoice.tenant.name}",
        body="\n".join(lines),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[customer.email],
        headers={"X-Ledgerflow-Invoice": invoice.number},
    )
    message.send(fail_silently=False)
