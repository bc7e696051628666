"""Building blocks for consolidation tests: enabled customers and issued invoices on given dates."""

from datetime import date
from decimal import Decimal

from consolidation import services
from core.actors import Actor
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


def issued_invoice_with_item_details(customer, on: date, *, amount="100.00", details):
    """An invoice of one explicit line (no charge) whose item carries `details`, issued on `on`."""
    draft = invoicing_services.invoice_create_draft(
        tenant=customer.tenant,
        actor=ACTOR,
        customer=customer,
        lines=[invoicing_services.DraftLine(description="Route charge", quantity=Decimal(1), unit_amount=Decimal(amount), details=details)],
    )
    return invoicing_services.invoice_issue(invoice=draft, actor=ACTOR, issue_date=on)


def bank_entry(tenant, amount: str, *, currency="EUR", reference="CONS-REF"):
    """A cleared bank credit of `amount` on the tenant's account (as an imported statement has it)."""
    import uuid

    from reconciliation.models import BankAccount, BankEntry, BankStatement
    from tests.factories import BankAccountFactory

    account = BankAccount.objects.filter(tenant=tenant).first() or BankAccountFactory(tenant=tenant)
    statement = BankStatement.objects.create(tenant=tenant, bank_account=account, format="csv", file_sha256=uuid.uuid4().hex * 2)
    return BankEntry.objects.create(
        tenant=tenant,
        bank_account=account,
        statement=statement,
        booking_date=date(2026, 2, 2),
        amount=Decimal(amount),
        currency=currency,
        reference=reference,
        dedup_key=f"id:{uuid.uuid4().hex}",
    )


def completed_payment(customer, amount: str, *, reference="CONS-REF"):
    """A completed payment of the customer (call inside capture: completion enqueues matching)."""
    from billing import services as billing_services
    from tests.factories import PaymentFactory

    payment = PaymentFactory(customer=customer, amount=Decimal(amount), reference=reference)
    billing_services.payment_transition(payment=payment, actor=ACTOR, status="processing")
    return billing_services.payment_transition(payment=payment, actor=ACTOR, status="completed")
