"""Applying an adjustment to an invoice line is one rule (invoicing.services._apply_adjustments):
one adjustment at a time (invoice_adjust) and a whole write-off chunk at a time (invoices_write_off)
change the lines and the invoice alike."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction

from core.actors import Actor
from core.attribution import audited
from invoicing import services
from invoicing.lifecycle import AdjustmentType
from invoicing.models import Invoice, InvoiceAdjustment, InvoiceItem, TaxItem
from tests.writeoffs.helpers import cancelled_subscription, unbalanced_invoice

ACTOR = Actor.system("tests")
LINES = (("100.00", "0.19"), ("40.50", None), ("0.01", "0.07"))


def _lines(invoice) -> list[tuple[str, int, Decimal]]:
    items = [("item", i.position, i.available_to_credit_amount) for i in InvoiceItem.objects.filter(invoice=invoice)]
    taxes = [("tax", t.invoice_item.position, t.available_to_credit_amount) for t in TaxItem.objects.filter(invoice=invoice)]
    return sorted(items + taxes)


def _books(invoice) -> tuple:
    invoice.refresh_from_db()
    return invoice.amount_credited, invoice.balance, _lines(invoice)


def _whole_balance(invoice, key: str) -> list[services.LineAdjustment]:
    """Credits taking every line's available amount: together the invoice's whole balance."""
    rows = [("item", i.pk, None, i.available_to_credit_amount) for i in InvoiceItem.objects.filter(invoice=invoice)]
    rows += [("tax", None, t.pk, t.available_to_credit_amount) for t in TaxItem.objects.filter(invoice=invoice)]
    return [
        services.LineAdjustment(
            invoice_id=invoice.pk,
            invoice_item_id=item_id,
            tax_item_id=tax_id,
            type=AdjustmentType.CREDIT,
            amount=amount,
            reason="test",
            source="writeoff",
            idempotency_key=f"{key}:{kind}-{item_id or tax_id}",
        )
        for kind, item_id, tax_id, amount in rows
        if amount > 0
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["payment_due", "partially_paid", "overdue"])
def test_a_write_off_changes_the_books_as_the_same_adjustments_one_by_one(tenant_a, status, django_capture_on_commit_callbacks):
    sub = cancelled_subscription(tenant_a.tenant, at=datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC")))
    paid = "0" if status == "payment_due" else "10.00"
    one_by_one = unbalanced_invoice(sub, lines=LINES, paid=paid, status=status)
    chunk = unbalanced_invoice(sub, lines=LINES, paid=paid, status=status)
    # the paid part stays paid: what the lines have available adds up to the balance
    for invoice in (one_by_one, chunk):
        InvoiceItem.objects.filter(invoice=invoice, position=0).update(available_to_credit_amount=100 - Decimal(paid))
    assert _books(one_by_one) == _books(chunk)

    for adjustment in _whole_balance(one_by_one, "single"):
        line = {"invoice_item": None, "tax_item": None}
        if adjustment.invoice_item_id:
            line["invoice_item"] = InvoiceItem.objects.get(pk=adjustment.invoice_item_id)
        else:
            line["tax_item"] = TaxItem.objects.get(pk=adjustment.tax_item_id)
        services.invoice_adjust(
            invoice=one_by_one,
            actor=ACTOR,
            type=adjustment.type,
            amount=adjustment.amount,
            reason="test",
            source="test",
            idempotency_key=adjustment.idempotency_key,
            **line,
        )
    with audited(actor=ACTOR, reason="test"):
        assert services.invoices_write_off(tenant_id=tenant_a.tenant.pk, adjustments=_whole_balance(chunk, "chunk")) == 1

    assert _books(one_by_one) == _books(chunk)
    assert chunk.balance == 0 and chunk.status == "written_off" and chunk.written_off_at is not None
    assert InvoiceAdjustment.objects.filter(invoice=chunk).count() == InvoiceAdjustment.objects.filter(invoice=one_by_one).count()


@pytest.mark.django_db
def test_a_write_off_that_would_leave_a_balance_raises_and_is_rolled_back(tenant_a):
    sub = cancelled_subscription(tenant_a.tenant, at=datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC")))
    invoice = unbalanced_invoice(sub, lines=LINES, status="payment_due")
    before = _books(invoice)
    short = _whole_balance(invoice, "short")[:-1]

    with pytest.raises(services.WriteOffIncomplete), transaction.atomic():
        services.invoices_write_off(tenant_id=tenant_a.tenant.pk, adjustments=short)

    assert _books(invoice) == before
    assert Invoice.objects.get(pk=invoice.pk).status == "payment_due"
    assert not InvoiceAdjustment.objects.filter(invoice=invoice).exists()
