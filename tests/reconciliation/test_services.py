"""The matching engine: each rule, each discrepancy kind, tolerance, many-to-one, one-to-many,
idempotency; an invoice is paid only when invoice, payment and bank entry agree."""

from decimal import Decimal

import pytest

from audit.models import Event
from reconciliation import services
from reconciliation.models import BankEntry, Reconciliation


def _statuses(books):
    return sorted(
        (r.status, r.discrepancy_kind, r.rule) for r in Reconciliation.objects.filter(tenant=books.tenant)
    )


def test_payment_matched_by_rail_id_and_bank_entry_marks_invoice_paid(books):
    # given an invoice, its completed payment and the bank credit carrying the rail id
    invoice = books.invoice("129.00")
    payment = books.payment("129.00", invoice=invoice, rail="pi_1")
    books.import_camt([{"amount": "129.00", "ref": "pi_1", "txid": "B1"}])

    # when matching runs
    result = books.run()

    # then the invoice is paid, linked to the payment and the entry
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.balance) == ("paid", Decimal("129.00"), 0)
    assert invoice.paid_at is not None
    recon = Reconciliation.objects.get(invoice=invoice)
    assert (recon.status, recon.payment_id, recon.rule) == ("reconciled", payment.pk, "payment_reference")
    assert BankEntry.objects.get().match_status == "reconciled"
    assert result.reconciled == 1


def test_completed_payment_alone_never_marks_invoice_paid(books):
    invoice = books.invoice("129.00")
    books.payment("129.00", invoice=invoice, rail="pi_1")

    books.run()

    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("payment_due", 0)


def test_invoice_number_in_payment_reference_links_invoice_and_payment(books):
    invoice = books.invoice("50.00")
    books.payment("50.00", rail="pi_2", reference=f"Invoice {invoice.number}")
    books.import_camt([{"amount": "50.00", "ref": "pi_2", "txid": "B2"}])

    books.run()

    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert _statuses(books) == [("reconciled", "", "invoice_number")]


def test_payment_matched_by_its_reference_when_no_rail_id(books):
    invoice = books.invoice("75.00")
    books.payment("75.00", invoice=invoice, reference="CUSTREF-77", status="pending")
    books.import_camt([{"amount": "75.00", "ref": "CUSTREF-77", "txid": "B3"}])

    books.run()

    invoice.refresh_from_db()
    assert invoice.status == "paid"


def test_bank_entry_naming_invoice_without_payment_is_missing_payment(books):
    invoice = books.invoice("40.00")
    books.import_camt([{"amount": "40.00", "text": f"pay {invoice.number}", "txid": "B4"}])

    books.run()

    invoice.refresh_from_db()
    assert invoice.status == "payment_due"
    assert _statuses(books) == [("discrepancy", "missing_payment", "invoice_number")]


def test_failed_payment_leaves_invoice_unpaid(books):
    invoice = books.invoice("40.00")
    books.payment("40.00", invoice=invoice, rail="pi_f", status="failed")
    books.import_camt([{"amount": "40.00", "ref": "pi_f", "text": invoice.number, "txid": "B5"}])

    books.run()

    invoice.refresh_from_db()
    assert invoice.status == "payment_due" and invoice.amount_paid == 0
    assert _statuses(books) == [("discrepancy", "missing_payment", "invoice_number")]


def test_amount_differing_from_payment_is_amount_mismatch(books):
    invoice = books.invoice("100.00")
    books.payment("100.00", invoice=invoice, rail="pi_3")
    books.import_camt([{"amount": "99.50", "ref": "pi_3", "txid": "B6"}])

    books.run()

    invoice.refresh_from_db()
    assert invoice.status == "payment_due"
    recon = Reconciliation.objects.get()
    assert (recon.status, recon.discrepancy_kind, recon.difference) == (
        "discrepancy",
        "amount_mismatch",
        Decimal("0.50"),
    )


def test_difference_within_tenant_tolerance_is_paid_with_the_shortfall_credited(books):
    services.settings_update(
        tenant=books.tenant, actor=books.actor, amount_tolerances={"EUR": Decimal("1.00")}
    )
    invoice = books.invoice("100.00")
    books.payment("100.00", invoice=invoice, rail="pi_4")
    books.import_camt([{"amount": "99.50", "ref": "pi_4", "txid": "B7"}])

    books.run()

    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert (invoice.amount_paid, invoice.amount_credited, invoice.balance) == (
        Decimal("99.50"),
        Decimal("0.50"),
        0,
    )


def test_less_than_balance_is_partially_paid_with_remaining_balance(books):
    invoice = books.invoice("100.00")
    books.payment("60.00", invoice=invoice, rail="pi_5")
    books.import_camt([{"amount": "60.00", "ref": "pi_5", "txid": "B8"}])

    books.run()

    invoice.refresh_from_db()
    assert (invoice.status, invoice.balance) == ("partially_paid", Decimal("40.00"))


def test_more_than_balance_is_paid_plus_overpayment_discrepancy(books):
    invoice = books.invoice("100.00")
    books.payment("120.00", invoice=invoice, rail="pi_6")
    books.import_camt([{"amount": "120.00", "ref": "pi_6", "txid": "B9"}])

    books.run()

    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.balance) == ("paid", Decimal("100.00"), 0)
    over = Reconciliation.objects.get(discrepancy_kind="overpayment")
    assert (over.invoice_id, over.difference) == (invoice.pk, Decimal("20.00"))


def test_several_payments_for_one_invoice(books):
    invoice = books.invoice("100.00")
    books.payment("30.00", invoice=invoice, rail="pi_a")
    books.payment("70.00", invoice=invoice, rail="pi_b")
    books.import_camt([{"amount": "30.00", "ref": "pi_a", "txid": "C1"}])
    books.run()
    invoice.refresh_from_db()
    assert invoice.status == "partially_paid"

    books.import_camt([{"amount": "70.00", "ref": "pi_b", "txid": "C2"}])
    books.run()

    invoice.refresh_from_db()
    assert (invoice.status, invoice.balance) == ("paid", 0)
    assert Reconciliation.objects.filter(invoice=invoice, status="reconciled").count() == 2


def test_two_payments_in_one_run_add_up(books):
    invoice = books.invoice("100.00")
    books.payment("30.00", invoice=invoice, rail="pi_c")
    books.payment("70.00", invoice=invoice, rail="pi_d")
    books.import_camt(
        [{"amount": "30.00", "ref": "pi_c", "txid": "C3"}, {"amount": "70.00", "ref": "pi_d", "txid": "C4"}]
    )

    books.run()

    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", Decimal("100.00"))


def test_one_bank_entry_paying_invoices_listed_in_remittance(books):
    first, second = books.invoice("100.00"), books.invoice("150.00")
    books.payment("250.00", rail="pi_m", reference=f"{first.number} {second.number}")
    books.import_camt(
        [{"amount": "250.00", "ref": "pi_m", "text": f"{first.number}, {second.number}", "txid": "D1"}]
    )

    books.run()

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("paid", "paid")
    assert sorted(r.amount for r in Reconciliation.objects.filter(rule="multi_invoice")) == [
        Decimal("100.00"),
        Decimal("150.00"),
    ]


def test_listed_invoices_not_adding_up_is_amount_mismatch(books):
    first, second = books.invoice("100.00"), books.invoice("150.00")
    books.payment("200.00", rail="pi_n")
    books.import_camt(
        [{"amount": "200.00", "ref": "pi_n", "text": f"{first.number} {second.number}", "txid": "D2"}]
    )

    books.run()

    first.refresh_from_db()
    assert first.status == "payment_due"
    assert _statuses(books) == [("discrepancy", "amount_mismatch", "multi_invoice")]


def test_payment_without_invoice_settles_exact_sum_of_customers_open_invoices(books):
    first, second = books.invoice("10.00"), books.invoice("20.00")
    books.payment("30.00", rail="pi_s")
    books.import_camt([{"amount": "30.00", "ref": "pi_s", "txid": "D3"}])

    books.run()

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("paid", "paid")
    assert {r.rule for r in Reconciliation.objects.all()} == {"customer_open_sum"}


def test_second_bank_credit_for_the_same_payment_is_duplicate(books):
    invoice = books.invoice("80.00")
    books.payment("80.00", invoice=invoice, rail="pi_dup")
    books.import_camt([{"amount": "80.00", "ref": "pi_dup", "txid": "E1"}])
    books.run()

    books.import_camt([{"amount": "80.00", "ref": "pi_dup", "txid": "E2"}])
    books.run()

    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", Decimal("80.00"))
    assert ("discrepancy", "duplicate", "payment_reference") in _statuses(books)


def test_pending_bank_entry_is_timing_difference_until_it_clears(books):
    invoice = books.invoice("90.00")
    books.payment("90.00", invoice=invoice, rail="pi_t")
    books.import_camt([{"amount": "90.00", "ref": "pi_t", "txid": "F1", "status": "PDNG"}])
    books.run()
    invoice.refresh_from_db()
    assert invoice.status == "payment_due"
    assert _statuses(books) == [("discrepancy", "timing_difference", "payment_reference")]

    # the next statement shows the same transaction booked
    result = books.import_camt([{"amount": "90.00", "ref": "pi_t", "txid": "F1"}])
    books.run()

    assert (result.new_entry_count, result.cleared_count) == (0, 1)
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert BankEntry.objects.get().status == "cleared"


def test_completed_payment_without_bank_credit_after_grace_is_missing_bank_entry(books, time_machine):
    invoice = books.invoice("55.00")
    time_machine.move_to("2026-03-01T10:00:00Z")
    books.payment("55.00", invoice=invoice, rail="pi_late")
    time_machine.move_to("2026-03-10T10:00:00Z")

    books.run()
    books.run()

    assert _statuses(books) == [("discrepancy", "missing_bank_entry", "payment_reference")]

    # when the credit finally arrives, the discrepancy is resolved and the invoice paid
    books.import_camt([{"amount": "55.00", "ref": "pi_late", "txid": "G1"}])
    books.run()
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert sorted(_statuses(books)) == [
        ("reconciled", "", "payment_reference"),
        ("resolved", "missing_bank_entry", "payment_reference"),
    ]


def test_running_twice_changes_nothing(books):
    invoice = books.invoice("129.00")
    books.payment("129.00", invoice=invoice, rail="pi_1")
    books.import_camt([{"amount": "129.00", "ref": "pi_1", "txid": "B1"}, {"amount": "5.00", "txid": "B2"}])
    books.run()
    events = Event.objects.count()

    second = books.run()

    assert (second.reconciled, second.discrepancies, second.invoices_settled) == (0, 0, 0)
    assert Event.objects.count() == events


def test_engine_writes_are_audited_as_the_run(books):
    invoice = books.invoice("129.00")
    books.payment("129.00", invoice=invoice, rail="pi_1")
    books.import_camt([{"amount": "129.00", "ref": "pi_1", "txid": "B1"}])

    books.run()

    event = Event.objects.filter(object_type="invoicing.invoice", object_id=invoice.pk).latest("id")
    assert event.new_values["status"] == "paid"
    assert event.reason == "reconciled with payment and bank entry"
    assert Event.objects.filter(object_type="reconciliation.reconciliation", action="created").count() == 1


def test_disabled_rule_is_not_applied(books):
    services.settings_update(tenant=books.tenant, actor=books.actor, rules=["payment_reference"])
    invoice = books.invoice("50.00")
    books.payment("50.00", rail="pi_2", reference=f"Invoice {invoice.number}")
    books.import_camt([{"amount": "50.00", "ref": "pi_2", "txid": "B2"}])

    books.run()

    invoice.refresh_from_db()
    assert invoice.status == "payment_due"


def test_manual_match_settles_and_resolves_discrepancy(books):
    invoice = books.invoice("40.00")
    books.import_camt([{"amount": "40.00", "text": invoice.number, "txid": "M1"}])
    books.run()
    entry = BankEntry.objects.get()
    payment = books.payment("40.00", invoice=invoice)

    services.reconciliation_match_manual(
        tenant=books.tenant,
        actor=books.actor,
        bank_entry=entry,
        invoices=[(invoice, Decimal("40.00"))],
        payment=payment,
        reason="customer paid by plain transfer",
    )

    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert sorted(_statuses(books)) == [
        ("reconciled", "", "manual"),
        ("resolved", "missing_payment", "invoice_number"),
    ]


def test_unmatch_discrepancy_returns_entry_to_queue_and_engine_leaves_it(books):
    invoice = books.invoice("40.00")
    books.import_camt([{"amount": "40.00", "text": invoice.number, "txid": "M2"}])
    books.run()
    discrepancy = Reconciliation.objects.get()

    services.reconciliation_unmatch(reconciliation=discrepancy, actor=books.actor, reason="not ours")
    books.run()

    entry = BankEntry.objects.get()
    assert (entry.match_status, entry.auto_match) == ("unmatched", False)
    assert _statuses(books) == [("reversed", "missing_payment", "invoice_number")]


def test_unmatching_a_paid_invoice_is_refused_by_the_transition_table(books):
    from core.errors import IllegalTransition

    invoice = books.invoice("129.00")
    books.payment("129.00", invoice=invoice, rail="pi_1")
    books.import_camt([{"amount": "129.00", "ref": "pi_1", "txid": "B1"}])
    books.run()

    with pytest.raises(IllegalTransition):
        services.reconciliation_unmatch(
            reconciliation=Reconciliation.objects.get(), actor=books.actor, reason="x"
        )


# --- Issue 12: tolerance, allocation, one bad entry, manual match ---------------------------------
def _tolerance(books, **amounts):
    services.settings_update(
        tenant=books.tenant, actor=books.actor, amount_tolerances={c: Decimal(a) for c, a in amounts.items()}
    )


def _two_invoice_credit(books, *, second_paid: str | None):
    first, second = books.invoice("50.00"), books.invoice("10.00")
    if second_paid:
        books.payment(second_paid, invoice=second, rail="pi_part")
        books.import_camt([{"amount": second_paid, "ref": "pi_part", "txid": "P0"}], statement_id="S0")
        books.run()
    _tolerance(books, EUR="1.00")
    books.payment("49.80", rail="pi_both", reference=f"{first.number} {second.number}")
    books.import_camt(
        [{"amount": "49.80", "ref": "pi_both", "text": f"{first.number} {second.number}", "txid": "P1"}]
    )
    return first, second


def _assert_books_hold(*invoices):
    for invoice in invoices:
        invoice.refresh_from_db()
        assert invoice.balance == invoice.total - invoice.amount_paid - invoice.amount_credited
        assert invoice.amount_paid >= 0
        if invoice.status in ("paid", "written_off"):
            assert invoice.balance == 0, invoice


def test_multi_invoice_credit_within_tolerance_never_allocates_more_than_the_money(books):
    # given A 50.00 and B 10.00 with 9.50 paid, one 49.80 credit naming both, tolerance 1.00
    first, second = _two_invoice_credit(books, second_paid="9.50")

    # when the engine runs
    books.run()

    # then no allocation is negative, together they are the money, and both are paid at balance 0
    allocations = Reconciliation.objects.filter(rule="multi_invoice", status="reconciled")
    assert all(r.amount >= 0 for r in allocations)
    assert sum(r.amount for r in allocations) == Decimal("49.80")
    _assert_books_hold(first, second)
    assert (first.status, first.amount_paid, first.amount_credited) == (
        "paid",
        Decimal("49.80"),
        Decimal("0.20"),
    )
    assert (second.status, second.amount_paid, second.amount_credited) == (
        "paid",
        Decimal("9.50"),
        Decimal("0.50"),
    )


def test_multi_invoice_credit_within_tolerance_on_unpaid_invoices_does_not_block_the_run(books):
    # given A 50.00 and B 0.50 with nothing paid, one 49.80 credit naming both, tolerance 1.00
    # (this once put -0.20 on B: IntegrityError in every run, no entry of the tenant reconciled)
    _tolerance(books, EUR="1.00")
    first, second = books.invoice("50.00"), books.invoice("0.50")
    books.payment("49.80", rail="pi_both", reference=f"{first.number} {second.number}")
    other = books.invoice("30.00")
    books.payment("30.00", invoice=other, rail="pi_other")
    books.import_camt(
        [
            {"amount": "49.80", "ref": "pi_both", "text": f"{first.number} {second.number}", "txid": "P1"},
            {"amount": "30.00", "ref": "pi_other", "txid": "P2"},
        ]
    )

    books.run()

    _assert_books_hold(first, second, other)
    assert (other.status, first.status, second.status) == ("paid", "paid", "paid")
    assert (first.amount_paid, second.amount_paid) == (Decimal("49.80"), 0)
    assert (first.amount_credited, second.amount_credited) == (Decimal("0.20"), Decimal("0.50"))


def test_tolerance_shortfall_is_booked_as_an_audited_credit_once(books):
    # given tolerance 0.05 EUR and a bank credit of 99.97 for an invoice of 100.00
    _tolerance(books, EUR="0.05")
    invoice = books.invoice("100.00")
    books.payment("100.00", invoice=invoice, rail="pi_tol")
    books.import_camt([{"amount": "99.97", "ref": "pi_tol", "txid": "T1"}])

    # when matched (twice)
    books.run()
    books.run()

    # then the invoice is paid with balance 0 and the 0.03 is one tolerance credit, audited
    from invoicing.models import InvoiceAdjustment

    invoice.refresh_from_db()
    assert (invoice.status, invoice.balance, invoice.amount_paid) == ("paid", 0, Decimal("99.97"))
    adjustment = InvoiceAdjustment.objects.get(invoice=invoice)
    recon = Reconciliation.objects.get(invoice=invoice, status="reconciled")
    assert (adjustment.type, adjustment.amount, adjustment.source, adjustment.reason) == (
        "credit",
        Decimal("0.03"),
        "tolerance",
        "payment tolerance",
    )
    assert adjustment.idempotency_key.startswith(f"reconciliation-{recon.pk}-tolerance")
    assert recon.difference == Decimal("0.03")
    assert Event.objects.filter(
        object_type="invoicing.invoiceadjustment", object_id=adjustment.pk, reason="payment tolerance"
    ).exists()


def test_tolerance_is_per_currency_and_an_unlisted_currency_has_none(books):
    from tests.factories import BankAccountFactory, CustomerFactory

    # given a tolerance for EUR only and a JPY customer paying 1 yen short
    _tolerance(books, EUR="1.00")
    yen = CustomerFactory(tenant=books.tenant, currency="JPY")
    invoice = books.invoice("1000", customer=yen)
    books.payment("1000", invoice=invoice, rail="pi_jpy")
    books.account = BankAccountFactory(tenant=books.tenant, currency="JPY", iban="DE02120300000000202051")
    books.import_camt(
        [{"amount": "999", "ref": "pi_jpy", "txid": "J1", "currency": "JPY"}], iban="DE02120300000000202051"
    )

    books.run()

    invoice.refresh_from_db()
    assert invoice.status == "payment_due"
    assert ("discrepancy", "amount_mismatch", "payment_reference") in _statuses(books)


@pytest.mark.parametrize(
    ("tolerances", "ok"),
    [
        ({"EUR": "0.05", "JPY": "5", "KWD": "0.005"}, True),
        ({"JPY": "0.5"}, False),
        ({"KWD": "0.0005"}, False),
        ({"EUR": "-0.01"}, False),
        ({"XXX": "1"}, False),
        ({"EUR": 0.05}, False),
    ],
)
def test_tolerances_must_fit_their_currency_and_not_be_negative(books, tolerances, ok):
    from core.errors import ValidationFailed

    if ok:
        found = services.settings_update(tenant=books.tenant, actor=books.actor, amount_tolerances=tolerances)
        assert {c: Decimal(a) for c, a in found.amount_tolerances.items()} == {
            c: Decimal(a) for c, a in tolerances.items()
        }
        return
    with pytest.raises(ValidationFailed) as refused:
        services.settings_update(tenant=books.tenant, actor=books.actor, amount_tolerances=tolerances)
    assert refused.value.field == "amountTolerances"


def test_one_entry_that_cannot_be_applied_becomes_a_discrepancy_and_the_others_are_reconciled(books):
    from django.db import connection

    # given two matching credits, and the database refusing any change to the first invoice
    bad, good = books.invoice("20.00"), books.invoice("30.00")
    books.payment("20.00", invoice=bad, rail="pi_bad")
    books.payment("30.00", invoice=good, rail="pi_good")
    books.import_camt(
        [
            {"amount": "20.00", "ref": "pi_bad", "txid": "F1"},
            {"amount": "30.00", "ref": "pi_good", "txid": "F2"},
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'invoice % is locked by the auditors', OLD.id; END $$;
            CREATE TRIGGER test_refuse BEFORE UPDATE ON invoicing_invoice FOR EACH ROW
            WHEN (OLD.id = {bad.pk}) EXECUTE FUNCTION test_refuse();
            """
        )

    # when the engine runs (twice: the failed entry must not come back every run)
    result = books.run()
    again = books.run()

    # then the good one is paid, the bad one is a match_failed discrepancy saying why
    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.status, bad.status) == ("paid", "payment_due")
    failed = Reconciliation.objects.get(discrepancy_kind="match_failed")
    assert "locked by the auditors" in failed.note
    assert failed.bank_entry.match_status == "discrepancy"
    assert (result.reconciled, again.reconciled, again.discrepancies) == (1, 0, 0)


def test_manual_match_remainder_becomes_a_discrepancy(books):
    invoice = books.invoice("10.00")
    books.import_camt([{"amount": "10.01", "text": invoice.number, "txid": "R1"}])
    entry = BankEntry.objects.get()
    payment = books.payment("10.01", invoice=invoice)

    services.reconciliation_match_manual(
        tenant=books.tenant,
        actor=books.actor,
        bank_entry=entry,
        invoices=[(invoice, Decimal("10.00"))],
        payment=payment,
        reason="by phone",
    )

    entry.refresh_from_db()
    invoice.refresh_from_db()
    assert (invoice.status, invoice.balance) == ("paid", 0)
    remainder = Reconciliation.objects.get(status="discrepancy")
    assert (remainder.discrepancy_kind, remainder.difference) == ("amount_mismatch", Decimal("0.01"))
    assert entry.match_status == "discrepancy"


@pytest.mark.parametrize("amount", ["0.0050", "10.001"])
def test_manual_match_amount_must_fit_the_currency(books, amount):
    from core.errors import ValidationFailed

    invoice = books.invoice("10.00")
    books.import_camt([{"amount": "10.01", "text": invoice.number, "txid": "R1"}])
    payment = books.payment("10.01", invoice=invoice)

    with pytest.raises(ValidationFailed) as refused:
        services.reconciliation_match_manual(
            tenant=books.tenant,
            actor=books.actor,
            bank_entry=BankEntry.objects.get(),
            invoices=[(invoice, Decimal(amount))],
            payment=payment,
            reason="by phone",
        )

    assert refused.value.field == "invoices[0].amount"
    invoice.refresh_from_db()
    assert invoice.balance == Decimal("10.00")


def test_manual_match_needs_a_payment(books):
    from core.errors import ValidationFailed

    invoice = books.invoice("10.00")
    books.import_camt([{"amount": "10.00", "text": invoice.number, "txid": "R1"}])

    with pytest.raises(ValidationFailed) as refused:
        services.reconciliation_match_manual(
            tenant=books.tenant,
            actor=books.actor,
            bank_entry=BankEntry.objects.get(),
            invoices=[(invoice, Decimal("10.00"))],
            payment=None,
            reason="by phone",
        )

    assert refused.value.field == "payment"


def test_a_payment_backs_at_most_its_amount_across_auto_and_manual_matches(books):
    from core.errors import Conflict

    # given a 50.00 payment the engine already reconciled with one bank entry
    first, second = books.invoice("50.00"), books.invoice("50.00")
    payment = books.payment("50.00", invoice=first, rail="pi_once")
    books.import_camt(
        [{"amount": "50.00", "ref": "pi_once", "txid": "A1"}, {"amount": "50.00", "text": "x", "txid": "A2"}]
    )
    books.run()
    other_entry = BankEntry.objects.get(bank_transaction_id="A2")

    # when an operator uses the same payment for another entry
    with pytest.raises(Conflict) as refused:
        services.reconciliation_match_manual(
            tenant=books.tenant,
            actor=books.actor,
            bank_entry=other_entry,
            invoices=[(second, Decimal("50.00"))],
            payment=payment,
            reason="by phone",
        )

    assert refused.value.code == "payment-exhausted"
    second.refresh_from_db()
    assert second.amount_paid == 0


def test_unmatching_a_written_off_invoices_payment_is_refused_and_changes_nothing(books):
    from core.errors import Conflict
    from invoicing import services as invoicing_services
    from invoicing.models import Invoice

    # given 40.00 of 100.00 paid through the bank, then the rest written off
    invoice = books.invoice("100.00")
    books.payment("40.00", invoice=invoice, rail="pi_wo")
    books.import_camt([{"amount": "40.00", "ref": "pi_wo", "txid": "W1"}])
    books.run()
    item = invoice.items.get()
    invoicing_services.invoice_adjust(
        invoice=invoice,
        actor=books.actor,
        type="credit",
        amount=Decimal("60.00"),
        reason="write-off",
        source="writeoff",
        idempotency_key="wo-1",
        invoice_item=item,
    )
    # as the write-off run leaves it (overdue → written_off, balance 0)
    Invoice.objects.filter(pk=invoice.pk).update(status="written_off")
    recon = Reconciliation.objects.get(status="reconciled")

    with pytest.raises(Conflict) as refused:
        services.reconciliation_unmatch(reconciliation=recon, actor=books.actor, reason="wrong customer")

    assert refused.value.code == "invoice-written-off"
    invoice.refresh_from_db()
    recon.refresh_from_db()
    assert (invoice.status, invoice.balance, invoice.amount_paid) == ("written_off", 0, Decimal("40.00"))
    assert recon.status == "reconciled"


def test_unmatching_part_of_an_entry_takes_the_money_back_and_records_what_was_freed(books):
    # given A (50.00) part-paid 10.00 by one entry, then one 60.00 entry matched by hand:
    # 20.00 onto A, 40.00 onto B (of 40.00)
    first, second = books.invoice("50.00"), books.invoice("40.00")
    books.import_camt(
        [
            {"amount": "10.00", "text": "first part", "txid": "U0"},
            {"amount": "60.00", "text": "two invoices", "txid": "U1"},
        ]
    )
    earlier, entry = (
        BankEntry.objects.get(bank_transaction_id="U0"),
        BankEntry.objects.get(bank_transaction_id="U1"),
    )
    for bank_entry, payment_amount, invoices in (
        (earlier, "10.00", [(first, Decimal("10.00"))]),
        (entry, "60.00", [(first, Decimal("20.00")), (second, Decimal("40.00"))]),
    ):
        services.reconciliation_match_manual(
            tenant=books.tenant,
            actor=books.actor,
            bank_entry=bank_entry,
            invoices=invoices,
            payment=books.payment(payment_amount),
            reason="by phone",
        )
    part = Reconciliation.objects.get(invoice=first, bank_entry=entry)

    # when A's part of the 60.00 entry is unmatched
    services.reconciliation_unmatch(reconciliation=part, actor=books.actor, reason="not for A")

    # then A owes 40.00 again, B stays paid, and the freed 20.00 waits as a discrepancy
    _assert_books_hold(first, second)
    assert (first.status, first.balance, second.status) == ("partially_paid", Decimal("40.00"), "paid")
    entry.refresh_from_db()
    freed = Reconciliation.objects.get(status="discrepancy")
    assert (freed.discrepancy_kind, freed.difference, entry.match_status) == (
        "amount_mismatch",
        Decimal("20.00"),
        "discrepancy",
    )


def test_unmatching_an_invoice_settled_only_by_tolerance_is_refused(books):
    from core.errors import IllegalTransition

    _tolerance(books, EUR="1.00")
    first, second = books.invoice("50.00"), books.invoice("0.50")
    books.payment("49.80", rail="pi_both", reference=f"{first.number} {second.number}")
    books.import_camt(
        [{"amount": "49.80", "ref": "pi_both", "text": f"{first.number} {second.number}", "txid": "P1"}]
    )
    books.run()
    nothing = Reconciliation.objects.get(invoice=second, status="reconciled")
    assert nothing.amount == 0

    with pytest.raises(IllegalTransition):
        services.reconciliation_unmatch(reconciliation=nothing, actor=books.actor, reason="x")

    nothing.refresh_from_db()
    assert nothing.status == "reconciled"


def test_a_bank_credit_above_its_payment_within_tolerance_backs_only_the_payment(books):
    # given a 99.97 payment for a 99.97 invoice, the bank credits 100.00, tolerance 0.05
    _tolerance(books, EUR="0.05")
    invoice = books.invoice("99.97")
    payment = books.payment("99.97", invoice=invoice, rail="pi_gap")
    books.import_camt([{"amount": "100.00", "ref": "pi_gap", "txid": "G1"}])

    books.run()

    # then the payment backs its own amount and the bank's extra 0.03 waits as a discrepancy
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.balance) == ("paid", Decimal("99.97"), 0)
    backed = Reconciliation.objects.filter(payment=payment, status="reconciled")
    assert [r.amount for r in backed] == [Decimal("99.97")]
    surplus = Reconciliation.objects.get(status="discrepancy")
    assert (surplus.discrepancy_kind, surplus.difference) == ("overpayment", Decimal("0.03"))


def test_a_multi_invoice_overpayment_within_tolerance_is_recorded_not_retired(books):
    # given A 50.00 and B 10.00, one 60.30 credit naming both, tolerance 1.00
    _tolerance(books, EUR="1.00")
    first, second = books.invoice("50.00"), books.invoice("10.00")
    books.payment("60.30", rail="pi_over", reference=f"{first.number} {second.number}")
    books.import_camt(
        [{"amount": "60.30", "ref": "pi_over", "text": f"{first.number} {second.number}", "txid": "O1"}]
    )

    books.run()

    # then each invoice takes its balance and the 0.30 left is an overpayment discrepancy
    _assert_books_hold(first, second)
    allocations = Reconciliation.objects.filter(status="reconciled").order_by("invoice_id")
    assert [(r.invoice_id, r.amount) for r in allocations] == [
        (first.pk, Decimal("50.00")),
        (second.pk, Decimal("10.00")),
    ]
    surplus = Reconciliation.objects.get(status="discrepancy")
    assert (surplus.discrepancy_kind, surplus.difference) == ("overpayment", Decimal("0.30"))


def test_a_manual_match_settles_only_the_payments_customer_and_only_a_booked_entry(books):
    # given an invoice of another customer, and a bank credit still pending at the bank
    from core.errors import ApplicationError
    from tests.factories import CustomerFactory

    theirs = books.invoice("40.00", customer=CustomerFactory(tenant=books.tenant))
    mine = books.invoice("40.00")
    payment = books.payment("40.00", invoice=mine, rail="pi_mine")
    books.import_camt([{"amount": "40.00", "txid": "PX", "status": "PDNG"}])
    entry = BankEntry.objects.get()

    refusals = []
    for invoice in (theirs, mine):
        try:
            services.reconciliation_match_manual(
                tenant=books.tenant,
                actor=books.actor,
                bank_entry=entry,
                invoices=[(invoice, Decimal("40.00"))],
                payment=payment,
                reason="by hand",
            )
        except ApplicationError as refused:
            refusals.append((refused.status, refused.code, refused.field))

    # then the other customer's invoice is named, the pending entry refused, and nothing changed
    assert refusals == [(400, "validation-error", "invoices[0].invoice"), (409, "bank-entry-pending", None)]
    assert not Reconciliation.objects.filter(status="reconciled").exists()
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert (theirs.amount_paid, mine.amount_paid) == (0, 0)


def test_unmatching_part_of_an_entry_with_a_remainder_leaves_one_discrepancy_for_all_it_has_left(books):
    # given A part-paid 10.00 earlier, then a 70.00 entry matched by hand: 20.00 onto A, 40.00 onto B,
    # 10.00 left as a discrepancy
    first, second = books.invoice("50.00"), books.invoice("40.00")
    books.import_camt(
        [
            {"amount": "10.00", "text": "first part", "txid": "R0"},
            {"amount": "70.00", "text": "two invoices", "txid": "R1"},
        ]
    )
    services.reconciliation_match_manual(
        tenant=books.tenant,
        actor=books.actor,
        bank_entry=BankEntry.objects.get(bank_transaction_id="R0"),
        invoices=[(first, Decimal("10.00"))],
        payment=books.payment("10.00"),
        reason="by phone",
    )
    entry = BankEntry.objects.get(bank_transaction_id="R1")
    services.reconciliation_match_manual(
        tenant=books.tenant,
        actor=books.actor,
        bank_entry=entry,
        invoices=[(first, Decimal("20.00")), (second, Decimal("40.00"))],
        payment=books.payment("70.00"),
        reason="by phone",
    )
    part = Reconciliation.objects.get(invoice=first, bank_entry=entry)

    # when A's part is unmatched
    services.reconciliation_unmatch(reconciliation=part, actor=books.actor, reason="not for A")

    # then one open discrepancy holds the 30.00 the entry has unallocated, not 10.00 and 30.00
    open_ones = Reconciliation.objects.filter(bank_entry=entry, status="discrepancy")
    assert [(d.discrepancy_kind, d.difference) for d in open_ones] == [("amount_mismatch", Decimal("30.00"))]


def test_a_run_larger_than_a_chunk_matches_every_chunk_and_a_payment_once_across_chunks(books, monkeypatch):
    from django.db import connection

    # given chunks of two entries, five credits, and a payment named by two credits in different chunks
    monkeypatch.setattr(services, "MATCH_CHUNK_ENTRIES", 2)
    invoices = [books.invoice(f"{10 + n}.00") for n in range(4)]
    for n, invoice in enumerate(invoices):
        books.payment(f"{10 + n}.00", invoice=invoice, rail=f"pi_chunk_{n}")
    books.import_camt(
        [{"amount": f"{10 + n}.00", "ref": f"pi_chunk_{n}", "txid": f"C{n}"} for n in range(4)]
        + [{"amount": "10.00", "ref": "pi_chunk_0", "txid": "C-again"}]
    )
    locks = []

    def count_locks(execute, sql, params, many, context):
        if "pg_advisory_xact_lock" in sql:
            locks.append(sql)
        return execute(sql, params, many, context)

    # when the engine runs
    with connection.execute_wrapper(count_locks):
        result = books.run()

    # then each chunk was its own locked step, every invoice is paid once and the second credit
    # naming the first payment (in the last chunk) is a duplicate
    assert len(locks) == 4  # three chunks of at most two entries, then the tail
    assert all(invoice.__class__.objects.get(pk=invoice.pk).status == "paid" for invoice in invoices)
    assert (result.reconciled, result.discrepancies) == (4, 1)
    assert (
        BankEntry.objects.get(bank_transaction_id="C-again").reconciliations.get().discrepancy_kind
        == "duplicate"
    )
