"""Building cancelled subscriptions and their unbalanced invoices for the write-off tests."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from django.db.models import F

from core.actors import Actor
from invoicing import services as invoicing
from invoicing.models import Invoice, InvoiceItem, TaxItem
from journeys import engine
from journeys.models import JourneyRun
from tests.factories import CustomerFactory, SubscriptionFactory

ACTOR = Actor.system("tests")


def cancelled_subscription(tenant, *, at: datetime, source: str = "MMA", customer=None):
    customer = customer or CustomerFactory(tenant=tenant)
    return SubscriptionFactory(customer=customer, status="cancelled", cancelled_at=at, cancellation_source=source)


def unbalanced_invoice(subscription, *, lines=(("100.00", "0.19"),), paid: str = "0", status: str = "overdue", issue_date=date(2026, 1, 1)) -> Invoice:
    """An issued invoice billing `subscription`; `lines` are (amount, tax rate or None); `paid` is taken off."""
    draft = invoicing.invoice_create_draft(
        tenant=subscription.tenant,
        actor=ACTOR,
        customer=subscription.customer,
        lines=[
            invoicing.DraftLine(description=f"line {i}", quantity=Decimal(1), unit_amount=Decimal(a), tax_rate=Decimal(r) if r else None)
            for i, (a, r) in enumerate(lines)
        ],
    )
    InvoiceItem.objects.filter(invoice=draft).update(subscription=subscription)
    invoice = invoicing.invoice_issue(invoice=draft, actor=ACTOR, issue_date=issue_date, due_date=issue_date)
    Invoice.objects.filter(pk=invoice.pk).update(
        status=status, amount_paid=Decimal(paid), balance=F("total") - Decimal(paid) - F("amount_credited")
    )
    invoice.refresh_from_db()
    return invoice


def unwritable_invoice(subscription, **kwargs) -> Invoice:
    """An open invoice with a balance but no line left to credit (its lines were credited to nothing
    elsewhere): the write-off rule cannot bring it to zero, so its candidate fails."""
    invoice = unbalanced_invoice(subscription, **kwargs)
    InvoiceItem.objects.filter(invoice=invoice).update(available_to_credit_amount=0)
    TaxItem.objects.filter(invoice=invoice).update(available_to_credit_amount=0)
    return invoice


def start_run(tenant, business_date: date, started_by=None) -> JourneyRun:
    run, _ = engine.run_start(
        journey_name="daily-write-off",
        tenant=tenant,
        actor=ACTOR,
        context={"businessDate": business_date.isoformat()},
        dedupe_key=business_date.isoformat(),
        started_by=started_by,
    )
    return run


def step(run: JourneyRun, state: str):
    result = engine.execute_step(run_pk=run.pk, state_id=state, actor=ACTOR)
    run.refresh_from_db()
    return result
