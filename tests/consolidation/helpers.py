"""Building blocks for consolidation tests: enabled customers and issued invoices on given dates."""

from datetime import date
from decimal import Decimal

from audit.actors import Actor
from consolidation import services
from invoicing import services as invoicing_services
from tests.factories import ChargeFactory, CustomerFactory

ACTOR = Actor.system("tests")


def enabled_customer(tenant, *, period_type="WEEKLY", start_day=1, since=date(2026, 1, 1), **kwargs):
    customer = CustomerFactory(tenant=tenant, **kwargs)
    services.customer_billing_period_update(
        customer=customer, actor=ACTOR, enabled=True, period_type=period_type, start_day=start_day, kyc_status="APPROVED", today=since
    )
    return customer


def issued_invoice(customer, on: date, *, amount="100.00", details=None):
    """An invoice for one charge, issued on `on` (emails are not enqueued: call inside capture)."""
    charge = ChargeFactory(
        customer=customer,
        unit_amount=Decimal(amount),
        tax_rate=None,
        details=details or {"aircraft": "D-ABCD", "route": "EDDF-LFPG", "firs": ["EDGG", "LFFF"], "countries": ["DE", "FR"]},
    )
    draft = invoicing_services.invoice_create_draft(tenant=customer.tenant, actor=ACTOR, customer=customer, charges=[charge])
    return invoicing_services.invoice_issue(invoice=draft, actor=ACTOR, issue_date=on)
