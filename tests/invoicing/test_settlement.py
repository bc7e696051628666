"""Settlement services: tolerance credits, paid means balance 0, what unmatch may take back."""

from decimal import Decimal

import pytest
from django.db import connection

from core.errors import Conflict, IllegalTransition, ValidationFailed
from invoicing import services
from invoicing.models import Invoice, InvoiceAdjustment


def _books_hold(invoice):
    invoice.refresh_from_db()
    assert invoice.balance == invoice.total - invoice.amount_paid - invoice.amount_credited
    return invoice


def test_tolerance_credit_takes_the_largest_line_first_and_is_booked_once(issued_invoice, actor):
    # given 129.00 over lines 100.00, tax 19.00 and 10.00
    first = services.invoice_book_tolerance_credit(
        invoice=issued_invoice,
        actor=actor,
        amount=Decimal("0.03"),
        idempotency_key="reconciliation-1-tolerance",
    )
    again = services.invoice_book_tolerance_credit(
        invoice=issued_invoice,
        actor=actor,
        amount=Decimal("0.03"),
        idempotency_key="reconciliation-1-tolerance",
    )

    assert [a.pk for a in again] == [a.pk for a in first]
    (credit,) = first
    assert (credit.type, credit.source, credit.reason, credit.amount) == (
        "credit",
        "tolerance",
        "payment tolerance",
        Decimal("0.03"),
    )
    assert credit.invoice_item.amount == Decimal("100.00")
    invoice = _books_hold(issued_invoice)
    assert invoice.balance == Decimal("128.97")


def test_tolerance_credit_spans_lines_only_when_no_line_has_enough(issued_invoice, actor):
    item = issued_invoice.items.get(amount=Decimal("100.00"))
    services.invoice_adjust(
        invoice=issued_invoice,
        actor=actor,
        type="credit",
        amount=Decimal("99.99"),
        reason="goodwill",
        source="api",
        idempotency_key="g-1",
        invoice_item=item,
    )

    made = services.invoice_book_tolerance_credit(
        invoice=issued_invoice,
        actor=actor,
        amount=Decimal("19.01"),
        idempotency_key="reconciliation-2-tolerance",
    )

    assert sorted(a.amount for a in made) == [Decimal("0.01"), Decimal("19.00")]
    _books_hold(issued_invoice)


def test_settlement_amount_must_fit_the_currency(issued_invoice, actor):
    with pytest.raises(ValidationFailed):
        services.invoice_apply_settlement(
            invoice=issued_invoice, actor=actor, amount=Decimal("0.005"), reason="bank"
        )
    assert _books_hold(issued_invoice).amount_paid == 0


def test_settlement_short_of_the_balance_is_never_paid(issued_invoice, actor):
    result = services.invoice_apply_settlement(
        invoice=issued_invoice, actor=actor, amount=Decimal("128.99"), reason="bank"
    )

    invoice = _books_hold(issued_invoice)
    assert (result.status, invoice.status, invoice.balance) == (
        "partially_paid",
        "partially_paid",
        Decimal("0.01"),
    )


def test_set_based_settlement_never_lowers_what_was_paid(issued_invoice, actor):
    services.invoice_apply_settlement(
        invoice=issued_invoice, actor=actor, amount=Decimal("9.50"), reason="bank"
    )
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE t_alloc (invoice_id bigint, amount numeric)")
        cursor.execute("INSERT INTO t_alloc VALUES (%s, -0.20)", [issued_invoice.pk])

    services.invoices_apply_settlements(
        tenant_id=issued_invoice.tenant_id, actor=actor, allocations_table="t_alloc", reason="bank"
    )

    invoice = _books_hold(issued_invoice)
    assert (invoice.status, invoice.amount_paid) == ("partially_paid", Decimal("9.50"))


def _written_off(invoice, actor):
    services.invoice_apply_settlement(invoice=invoice, actor=actor, amount=Decimal("40.00"), reason="bank")
    services.invoice_adjust(
        invoice=invoice,
        actor=actor,
        type="credit",
        amount=Decimal("89.00"),
        reason="write-off",
        source="writeoff",
        idempotency_key="wo-1",
        invoice_item=invoice.items.get(amount=Decimal("100.00")),
    )
    # the write-off run's end state: overdue → written_off, balance 0 (its service is another app's)
    Invoice.objects.filter(pk=invoice.pk).update(status="written_off")
    return invoice


def test_reversing_a_written_off_invoices_payment_is_refused_naming_why(issued_invoice, actor):
    invoice = _written_off(issued_invoice, actor)
    before = Invoice.objects.values().get(pk=invoice.pk)

    with pytest.raises(Conflict) as refused:
        services.invoice_reverse_settlement(
            invoice=invoice, actor=actor, amount=Decimal("40.00"), reason="undo"
        )

    assert (refused.value.code, refused.value.status) == ("invoice-written-off", 409)
    assert Invoice.objects.values().get(pk=invoice.pk) == before


def test_reversing_on_a_cancelled_invoice_is_refused(issued_invoice, actor):
    services.invoice_cancel(invoice=issued_invoice, actor=actor, reason="wrong customer")

    with pytest.raises(Conflict) as refused:
        services.invoice_reverse_settlement(
            invoice=issued_invoice, actor=actor, amount=Decimal("1.00"), reason="undo"
        )

    assert refused.value.code == "invoice-cancelled"


def test_reversing_a_part_payment_keeps_the_books_and_a_paid_invoice_is_final(issued_invoice, actor):
    services.invoice_apply_settlement(
        invoice=issued_invoice, actor=actor, amount=Decimal("29.00"), reason="a"
    )
    services.invoice_apply_settlement(
        invoice=issued_invoice, actor=actor, amount=Decimal("30.00"), reason="b"
    )

    services.invoice_reverse_settlement(
        invoice=issued_invoice, actor=actor, amount=Decimal("30.00"), reason="u"
    )

    invoice = _books_hold(issued_invoice)
    assert (invoice.status, invoice.balance) == ("partially_paid", Decimal("100.00"))
    services.invoice_apply_settlement(invoice=invoice, actor=actor, amount=Decimal("100.00"), reason="c")
    with pytest.raises(IllegalTransition):
        services.invoice_reverse_settlement(invoice=invoice, actor=actor, amount=Decimal("1.00"), reason="u")
    assert InvoiceAdjustment.objects.count() == 0
