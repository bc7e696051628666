"""What the new statement data carries drives matching: the invoice's RF creditor reference first,
then the end-to-end id, the invoice number in the remittance, then amount and payer; each entry of a
batch booking matches on its own."""

import io
from decimal import Decimal

from stdnum import iso11649

from reconciliation import services
from reconciliation.models import Reconciliation
from tests.reconciliation.test_dialects import _camt, _ntry, _tx


def _import(books, data: bytes):
    with books._capture(execute=False):
        return services.statement_import(
            tenant=books.tenant,
            actor=books.actor,
            bank_account=books.account,
            stream=io.BytesIO(data),
            run_matching=False,
        )


def test_an_issued_invoice_carries_a_valid_rf_reference_built_from_its_number(books, api):
    invoice = books.invoice("10.00")

    assert iso11649.is_valid(invoice.creditor_reference)
    assert invoice.creditor_reference.endswith(invoice.number.replace("-", "").upper())
    assert api.get(f"/api/v1/invoices/{invoice.pk}").json()["creditorReference"] == invoice.creditor_reference


def test_a_batch_booking_settles_each_invoice_by_its_own_reference(books):
    # given three invoices and their (bank transfer) payments
    by_rf, by_number, by_payer = books.invoice("100.00"), books.invoice("200.00"), books.invoice("45.50")
    for invoice in (by_rf, by_number, by_payer):
        books.payment(str(invoice.total), invoice=invoice)
    name = books.customer.name
    # when one booking of the bank brings the three transfers
    batch = _ntry(
        "345.50",
        _tx("100.00", "NOTPROVIDED", "Someone else", "DE02120300000000202051", rf=by_rf.creditor_reference)
        + _tx("200.00", "NOTPROVIDED", "x", "DE02120300000000202051", text=f"invoice {by_number.number}")
        + _tx("45.50", "NOTPROVIDED", name, "DE02120300000000202051", text="thanks"),
    )
    _import(books, _camt(batch))
    result = books.run()

    # then each transaction settled its invoice by its own rule
    assert result.reconciled == 3
    rules = {r.invoice_id: (r.status, r.rule, r.amount) for r in Reconciliation.objects.all()}
    assert rules == {
        by_rf.pk: ("reconciled", "creditor_reference", Decimal("100.00")),
        by_number.pk: ("reconciled", "invoice_number", Decimal("200.00")),
        by_payer.pk: ("reconciled", "amount_counterparty", Decimal("45.50")),
    }
    for invoice in (by_rf, by_number, by_payer):
        invoice.refresh_from_db()
        assert invoice.status == "paid"


def test_the_creditor_reference_wins_over_an_invoice_number_in_the_text(books):
    named, quoted = books.invoice("10.00"), books.invoice("20.00")
    books.payment("20.00", invoice=quoted)
    text = f"for {named.number}"
    _import(
        books,
        _camt(
            _ntry(
                "20.00",
                _tx(
                    "20.00",
                    "NOTPROVIDED",
                    "x",
                    "DE02120300000000202051",
                    text=text,
                    rf=quoted.creditor_reference,
                ),
            )
        ),
    )

    books.run()

    assert list(Reconciliation.objects.values_list("invoice_id", "rule", "status")) == [
        (quoted.pk, "creditor_reference", "reconciled")
    ]


def test_an_rf_entry_without_any_payment_is_a_missing_payment_discrepancy(books):
    invoice = books.invoice("30.00")
    _import(
        books,
        _camt(
            _ntry("30.00", _tx("30.00", "X", "x", "DE02120300000000202051", rf=invoice.creditor_reference))
        ),
    )

    books.run()

    invoice.refresh_from_db()
    assert invoice.status == "payment_due"
    assert list(Reconciliation.objects.values_list("discrepancy_kind", "rule")) == [
        ("missing_payment", "creditor_reference")
    ]


def test_amount_and_payer_match_only_when_exactly_one_open_invoice_fits(books):
    first, second = books.invoice("70.00"), books.invoice("70.00")
    books.payment("70.00", invoice=first)
    books.payment("70.00", invoice=second)
    _import(
        books,
        _camt(_ntry("70.00", _tx("70.00", "NOTPROVIDED", books.customer.name, "DE02120300000000202051"))),
    )

    books.run()

    assert not Reconciliation.objects.filter(status="reconciled").exists()
