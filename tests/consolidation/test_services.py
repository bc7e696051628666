"""Building, numbering, issuing and settling consolidated invoices (services called directly)."""

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection

from audit.models import Event
from consolidation import selectors, services
from consolidation.models import ConsolidatedInvoice, ConsolidatedInvoiceLine, ConsolidationSettings
from invoicing import services as invoicing_services
from tests.consolidation.helpers import (
    ACTOR,
    bank_entry,
    completed_payment,
    enabled_customer,
    issued_invoice,
    issued_invoice_with_item_details,
)

SUNDAY = date(2026, 1, 25)  # last day of the week Monday 19 – Sunday 25 Jan 2026


@pytest.fixture
def no_enqueue(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        yield


def build(tenant, day, run=None):
    from journeys.models import JourneyRun

    run = run or JourneyRun.objects.create(journey_name=selectors.JOURNEY_NAME, tenant=tenant, current_state="buildDrafts")
    ids = selectors.customers_due(tenant_id=tenant.pk, day=day)
    services.drafts_build(tenant_id=tenant.pk, run_pk=run.pk, day=day, customer_ids=ids, actor=ACTOR)
    return run


pytestmark = pytest.mark.django_db


def test_period_invoices_become_one_draft_with_a_line_each_and_aggregates(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    first = issued_invoice(customer, date(2026, 1, 19), amount="100.00")
    issued_invoice(customer, date(2026, 1, 22), amount="50.25", details={"aircraft": "D-EFGH", "firs": ["LOVV"], "countries": ["AT"]})
    issued_invoice(customer, date(2026, 1, 26), amount="10.00")  # next week

    build(tenant_a.tenant, SUNDAY)

    ci = ConsolidatedInvoice.objects.get(customer=customer)
    assert (ci.period_start, ci.period_end, ci.status) == (date(2026, 1, 19), SUNDAY, "DRAFT")
    assert (ci.invoice_count, ci.total, ci.totals_by_currency) == (2, Decimal("150.25"), {"EUR": "150.2500"})
    assert ci.firs == ["EDGG", "LFFF", "LOVV"]
    assert ci.countries == ["AT", "DE", "FR"]
    assert ci.aircraft == ["D-ABCD", "D-EFGH"]
    line = ci.lines.get(source_invoice=first)
    assert (line.invoice_number, line.invoice_date, line.amount) == (first.number, date(2026, 1, 19), Decimal("100.00"))
    assert line.details[0]["route"] == "EDDF-LFPG"


def test_customer_whose_period_does_not_end_today_is_not_selected(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant, period_type="MONTHLY", start_day=1)
    issued_invoice(customer, date(2026, 1, 19))

    assert selectors.customers_due(tenant_id=tenant_a.tenant.pk, day=SUNDAY) == []
    assert selectors.customers_due(tenant_id=tenant_a.tenant.pk, day=date(2026, 1, 31)) == [customer.pk]


def test_customer_without_approved_kyc_is_not_selected(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    services.customer_billing_period_update(customer=customer, actor=ACTOR, kyc_status="PENDING")

    assert selectors.customers_due(tenant_id=tenant_a.tenant.pk, day=SUNDAY) == []


def test_zero_invoices_create_no_consolidated_invoice(tenant_a, no_enqueue):
    enabled_customer(tenant_a.tenant)

    build(tenant_a.tenant, SUNDAY)

    assert not ConsolidatedInvoice.objects.exists()


def test_cancelled_invoices_are_excluded(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    kept = issued_invoice(customer, date(2026, 1, 20))
    cancelled = issued_invoice(customer, date(2026, 1, 21))
    invoicing_services.invoice_cancel(invoice=cancelled, actor=ACTOR, reason="test")

    build(tenant_a.tenant, SUNDAY)

    assert list(ConsolidatedInvoiceLine.objects.values_list("source_invoice_id", flat=True)) == [kept.pk]


def test_running_twice_builds_one_invoice_and_never_consolidates_an_invoice_twice(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    issued_invoice(customer, date(2026, 1, 20))

    build(tenant_a.tenant, SUNDAY)
    build(tenant_a.tenant, SUNDAY)  # another run, same day

    assert ConsolidatedInvoice.objects.count() == 1
    assert ConsolidatedInvoiceLine.objects.count() == 1


def test_already_consolidated_period_is_refused_by_generate(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    issued_invoice(customer, date(2026, 1, 20))
    build(tenant_a.tenant, SUNDAY)

    with pytest.raises(services.PeriodAlreadyConsolidated):
        services.consolidated_generate(customer=customer, actor=ACTOR, period_start=date(2026, 1, 19), today=SUNDAY)


def test_generate_says_why_nothing_was_made(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    with pytest.raises(services.NoInvoicesInPeriod):
        services.consolidated_generate(customer=customer, actor=ACTOR, today=SUNDAY)
    services.customer_billing_period_update(customer=customer, actor=ACTOR, enabled=False, today=SUNDAY)
    with pytest.raises(services.CustomerNotEnabled):
        services.consolidated_generate(customer=customer, actor=ACTOR, today=SUNDAY)
    assert not ConsolidatedInvoice.objects.exists()


def test_late_arrival_for_a_closed_period_goes_into_the_next_one(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    issued_invoice(customer, date(2026, 1, 20))
    build(tenant_a.tenant, SUNDAY)
    # issued on the period's last day after the 01:00 run (or backdated): its period is closed
    late = issued_invoice(customer, date(2026, 1, 25))
    issued_invoice(customer, date(2026, 1, 27))

    build(tenant_a.tenant, date(2026, 2, 1))

    next_week = ConsolidatedInvoice.objects.get(customer=customer, period_start=date(2026, 1, 26))
    assert next_week.invoice_count == 2
    assert next_week.lines.filter(source_invoice=late).exists()


def test_invoices_from_before_opting_in_are_not_swept_in(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant, since=date(2026, 1, 21))
    issued_invoice(customer, date(2026, 1, 20))

    build(tenant_a.tenant, SUNDAY)

    assert not ConsolidatedInvoice.objects.exists()


def test_disabling_mid_period_makes_one_final_invoice_and_later_invoices_stay_individual(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    in_period = issued_invoice(customer, date(2026, 1, 20))
    services.customer_billing_period_update(customer=customer, actor=ACTOR, enabled=False, today=date(2026, 1, 21))
    after = issued_invoice(customer, date(2026, 1, 22))

    build(tenant_a.tenant, SUNDAY)
    issued_invoice(customer, date(2026, 1, 27))
    build(tenant_a.tenant, date(2026, 2, 1))

    final = ConsolidatedInvoice.objects.get(customer=customer)
    assert list(final.lines.values_list("source_invoice_id", flat=True)) == [in_period.pk]
    assert not ConsolidatedInvoiceLine.objects.filter(source_invoice=after).exists()


def test_disabling_without_final_invoice_leaves_the_open_period_individual(tenant_a, no_enqueue):
    ConsolidationSettings.objects.create(tenant=tenant_a.tenant, final_invoice_on_disable=False)
    customer = enabled_customer(tenant_a.tenant)
    issued_invoice(customer, date(2026, 1, 20))
    services.customer_billing_period_update(customer=customer, actor=ACTOR, enabled=False, today=date(2026, 1, 21))

    build(tenant_a.tenant, SUNDAY)

    assert not ConsolidatedInvoice.objects.exists()


def test_failure_halfway_leaves_nothing_half_written(tenant_a, no_enqueue, monkeypatch):
    customer = enabled_customer(tenant_a.tenant)
    issued_invoice(customer, date(2026, 1, 20))
    # the totals statement fails after drafts and lines were inserted in the same transaction
    monkeypatch.setattr(services, "_TOTALS_SQL", "SELECT 1/0")

    with pytest.raises(Exception, match="division by zero"):
        build(tenant_a.tenant, SUNDAY)

    assert not ConsolidatedInvoice.objects.exists()
    assert not ConsolidatedInvoiceLine.objects.exists()


def test_issue_numbers_per_period_without_gaps_and_sets_due_date(tenant_a, no_enqueue):
    tenant = tenant_a.tenant
    customers = [enabled_customer(tenant) for _ in range(3)]
    for customer in customers:
        issued_invoice(customer, date(2026, 1, 20))
    run = build(tenant, SUNDAY)

    assert services.drafts_issue(run_pk=run.pk, tenant=tenant, actor=ACTOR, issue_date=SUNDAY) == 3
    assert services.drafts_issue(run_pk=run.pk, tenant=tenant, actor=ACTOR, issue_date=SUNDAY) == 0

    issued = ConsolidatedInvoice.objects.order_by("customer_id")
    assert [c.number for c in issued] == ["CONS-2026-W04-001", "CONS-2026-W04-002", "CONS-2026-W04-003"]
    assert {(c.status, c.issue_date, c.due_date) for c in issued} == {("PENDING", SUNDAY, date(2026, 2, 24))}
    assert Event.objects.filter(object_type="consolidation.consolidatedinvoice", new_values__status="PENDING").count() == 3


def test_rejected_drafts_are_cancelled_and_their_sources_released(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    source = issued_invoice(customer, date(2026, 1, 20))
    run = build(tenant_a.tenant, SUNDAY)

    services.drafts_discard(run_pk=run.pk, actor=ACTOR)
    build(tenant_a.tenant, date(2026, 2, 1))

    assert ConsolidatedInvoice.objects.get(status="CANCELLED").lines.count() == 0
    assert ConsolidatedInvoice.objects.get(status="DRAFT").lines.get().source_invoice_id == source.pk


def issue(tenant, day=SUNDAY):
    run = build(tenant, day)
    services.drafts_issue(run_pk=run.pk, tenant=tenant, actor=ACTOR, issue_date=day)
    return run


def test_paying_a_consolidated_invoice_settles_each_source_by_what_it_owes_through_reconciliation(tenant_a, no_enqueue):
    from reconciliation.models import Reconciliation

    # given source A of 100.00, 40.00 of it paid by bank while the consolidated invoice was a draft
    customer = enabled_customer(tenant_a.tenant)
    a = issued_invoice(customer, date(2026, 1, 20))
    b = issued_invoice(customer, date(2026, 1, 21), amount="20.00")
    run = build(tenant_a.tenant, SUNDAY)
    invoicing_services.invoice_apply_settlement(invoice=a, actor=ACTOR, amount=Decimal("40.00"), reason="bank")
    services.drafts_issue(run_pk=run.pk, tenant=tenant_a.tenant, actor=ACTOR, issue_date=SUNDAY)
    ci = ConsolidatedInvoice.objects.get()
    assert ci.total == Decimal("80.00")  # what the sources still owe at issue
    entry, payment = bank_entry(tenant_a.tenant, "80.00"), completed_payment(customer, "80.00")

    # when
    paid = services.consolidated_invoice_settle(consolidated_invoice=ci, actor=ACTOR, bank_entry=entry, payment=payment)
    again = services.consolidated_invoice_settle(consolidated_invoice=ci, actor=ACTOR, bank_entry=entry, payment=payment)

    # then: amount_paid grew by what was applied (40.00 by bank + 60.00 consolidated), never overwritten
    assert (paid.status, again.status, paid.payment_reference) == ("PAID", "PAID", "CONS-REF")
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.status, a.amount_paid, a.balance) == ("paid", Decimal("100.00"), 0)
    assert (b.status, b.amount_paid, b.balance) == ("paid", Decimal("20.00"), 0)
    recs = Reconciliation.objects.filter(invoice__in=[a, b], status="reconciled")
    assert sorted((r.invoice_id, r.amount, r.payment_id, r.bank_entry_id) for r in recs) == [
        (a.pk, Decimal("60.00"), payment.pk, entry.pk),
        (b.pk, Decimal("20.00"), payment.pk, entry.pk),
    ]
    other = bank_entry(tenant_a.tenant, "80.00")
    with pytest.raises(services.ConsolidatedInvoicePaid):
        services.consolidated_invoice_settle(consolidated_invoice=ci, actor=ACTOR, bank_entry=other, payment=payment)


def test_settling_without_or_with_a_short_bank_entry_or_payment_is_refused_naming_the_field(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    source = issued_invoice(customer, date(2026, 1, 20))
    issue(tenant_a.tenant)
    ci = ConsolidatedInvoice.objects.get()
    entry, payment = bank_entry(tenant_a.tenant, "100.00"), completed_payment(customer, "100.00")
    stranger = completed_payment(enabled_customer(tenant_a.tenant), "100.00")
    cases = [
        (None, payment, "bankEntry"),
        (entry, None, "payment"),
        (bank_entry(tenant_a.tenant, "99.99"), payment, "bankEntry"),
        (bank_entry(tenant_a.tenant, "100.00", currency="USD"), payment, "bankEntry"),
        (entry, completed_payment(customer, "50.00"), "payment"),
        (entry, stranger, "payment"),
    ]

    for bad_entry, bad_payment, field in cases:
        with pytest.raises(services.ValidationFailed) as refused:
            services.consolidated_invoice_settle(consolidated_invoice=ci, actor=ACTOR, bank_entry=bad_entry, payment=bad_payment)
        assert (refused.value.status, refused.value.field) == (400, field)

    ci.refresh_from_db()
    source.refresh_from_db()
    assert (ci.status, source.status, source.amount_paid) == ("PENDING", "payment_due", 0)


def test_a_source_on_an_issued_consolidated_invoice_changes_only_through_it(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    source = issued_invoice(customer, date(2026, 1, 20))
    issue(tenant_a.tenant)
    ci = ConsolidatedInvoice.objects.get()
    item = source.items.get()

    refusals = []
    for attempt in (
        lambda: invoicing_services.invoice_cancel(invoice=source, actor=ACTOR, reason="customer asks"),
        lambda: invoicing_services.invoice_adjust(
            invoice=source, actor=ACTOR, type="credit", amount=Decimal("10.00"), reason="goodwill",
            source="api", idempotency_key="gw-1", invoice_item=item,
        ),
    ):
        with pytest.raises(invoicing_services.InvoiceConsolidated) as refused:
            attempt()
        refusals.append(refused.value)

    assert {(r.status, r.code) for r in refusals} == {(409, "invoice-consolidated")}
    assert refusals[0].extra == {"consolidatedInvoiceId": ci.pk, "consolidatedInvoiceNumber": "CONS-2026-W04-001"}
    source.refresh_from_db()
    assert (source.status, source.balance, source.amount_credited) == ("payment_due", Decimal("100.00"), 0)


def test_api_cancel_of_a_consolidated_source_answers_409_naming_the_consolidated_invoice(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    source = issued_invoice(customer, date(2026, 1, 20))
    issue(tenant_a.tenant)

    response = tenant_a.client.post(f"/api/v1/invoices/{source.pk}/cancel", {"reason": "customer asks"}, format="json")

    assert response.status_code == 409
    body = response.json()
    assert (body["code"], body["consolidatedInvoiceNumber"]) == ("invoice-consolidated", "CONS-2026-W04-001")


def test_a_draft_follows_its_sources_until_it_is_issued(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    cancelled = issued_invoice(customer, date(2026, 1, 20))
    credited = issued_invoice(customer, date(2026, 1, 21), amount="50.00")
    run = build(tenant_a.tenant, SUNDAY)
    # while the consolidated invoice is a draft, its sources may still change directly
    invoicing_services.invoice_cancel(invoice=cancelled, actor=ACTOR, reason="billed by mistake")
    invoicing_services.invoice_adjust(
        invoice=credited, actor=ACTOR, type="credit", amount=Decimal("15.00"), reason="goodwill",
        source="api", idempotency_key="gw-2", invoice_item=credited.items.get(),
    )

    services.drafts_issue(run_pk=run.pk, tenant=tenant_a.tenant, actor=ACTOR, issue_date=SUNDAY)

    ci = ConsolidatedInvoice.objects.get()
    assert (ci.status, ci.total, ci.invoice_count, ci.totals_by_currency) == ("PENDING", Decimal("35.00"), 1, {"EUR": "35.0000"})
    assert list(ci.lines.values_list("source_invoice_id", "amount")) == [(credited.pk, Decimal("35.00"))]
    assert not ConsolidatedInvoiceLine.objects.filter(source_invoice=cancelled).exists()
    credited.refresh_from_db()
    assert (credited.consolidated_into_id, credited.consolidated_into_number) == (ci.pk, ci.number)


def test_a_draft_whose_sources_all_owe_nothing_is_cancelled_not_issued(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    source = issued_invoice(customer, date(2026, 1, 20))
    run = build(tenant_a.tenant, SUNDAY)
    invoicing_services.invoice_cancel(invoice=source, actor=ACTOR, reason="billed by mistake")

    assert services.drafts_issue(run_pk=run.pk, tenant=tenant_a.tenant, actor=ACTOR, issue_date=SUNDAY) == 0

    ci = ConsolidatedInvoice.objects.get()
    assert (ci.status, ci.number, ci.total) == ("CANCELLED", None, 0)


def test_item_details_are_carried_onto_the_consolidated_lines_and_its_pdf(tenant_a, no_enqueue):
    import re
    import zlib

    from consolidation.pdf import render

    customer = enabled_customer(tenant_a.tenant)
    issued_invoice_with_item_details(
        customer, date(2026, 1, 20), details={"aircraft": "OE-LBX", "route": "LOWW-LIRF", "firs": ["LOVV", "LIMM"]}
    )
    issue(tenant_a.tenant)

    ci = ConsolidatedInvoice.objects.get()
    assert ci.lines.get().details == [{"aircraft": "OE-LBX", "route": "LOWW-LIRF", "firs": ["LOVV", "LIMM"]}]
    assert (ci.aircraft, ci.firs) == (["OE-LBX"], ["LIMM", "LOVV"])
    pdf = render(ci)
    text = b"".join(zlib.decompress(stream) for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S))
    assert b"OE-LBX; LOWW-LIRF; firs LOVV, LIMM" in text
    assert b"Aircraft: OE-LBX" in text
    # amounts read with the currency's minor units, the line and the total alike
    assert b"100.00 EUR" in text
    assert b"Total: 100.00 EUR" in text


def test_pending_consolidated_invoice_becomes_overdue_after_due_date(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    issued_invoice(customer, date(2026, 1, 20))
    run = build(tenant_a.tenant, SUNDAY)
    services.drafts_issue(run_pk=run.pk, tenant=tenant_a.tenant, actor=ACTOR, issue_date=SUNDAY)

    assert services.consolidated_invoices_mark_overdue(actor=ACTOR, today=date(2026, 2, 24)) == 0
    assert services.consolidated_invoices_mark_overdue(actor=ACTOR, today=date(2026, 2, 25)) == 1
    assert services.consolidated_invoices_mark_overdue(actor=ACTOR, today=date(2026, 2, 25)) == 0
    assert ConsolidatedInvoice.objects.get().status == "OVERDUE"


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_generates_for_one_customer_and_period_make_one_invoice(tenant_a, django_capture_on_commit_callbacks):
    customer = enabled_customer(tenant_a.tenant)
    with django_capture_on_commit_callbacks(execute=False):
        for day in (19, 20, 21):
            issued_invoice(customer, date(2026, 1, day))
    barrier = threading.Barrier(20)
    outcomes = []

    def generate():
        try:
            barrier.wait()
            services.consolidated_generate(customer=customer, actor=ACTOR, period_start=date(2026, 1, 19), today=SUNDAY)
            outcomes.append("created")
        except services.PeriodAlreadyConsolidated:
            outcomes.append("409")
        finally:
            connection.close()

    from unittest import mock

    # the runs' first steps are not needed here: keep their messages out of Redis
    with mock.patch("journeys.engine._enqueue_step"):
        threads = [threading.Thread(target=generate) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    assert sorted(outcomes) == ["409"] * 19 + ["created"]
    assert ConsolidatedInvoice.objects.count() == 1
    assert ConsolidatedInvoiceLine.objects.count() == 3


def test_money_for_a_consolidated_source_is_never_applied_to_it_directly(tenant_a, no_enqueue):
    from reconciliation import services as reconciliation_services
    from reconciliation.models import Reconciliation

    # given a source on an issued consolidated invoice, and a bank credit with its payment naming the source
    customer = enabled_customer(tenant_a.tenant)
    source = issued_invoice(customer, date(2026, 1, 20))
    issue(tenant_a.tenant)
    entry = bank_entry(tenant_a.tenant, "100.00", reference=source.number)
    completed_payment(customer, "100.00", reference=source.number)

    # when the matcher runs, and when someone settles the source by hand
    reconciliation_services.reconciliation_run(tenant_id=tenant_a.tenant.pk, actor=ACTOR)
    with pytest.raises(invoicing_services.InvoiceConsolidated):
        invoicing_services.invoice_apply_settlement(invoice=source, actor=ACTOR, amount=Decimal("100.00"), reason="bank")

    # then the entry waits as a discrepancy saying so, and the source owes what it owed
    outcome = Reconciliation.objects.get(bank_entry=entry)
    assert (outcome.status, outcome.discrepancy_kind) == ("discrepancy", "consolidated_source")
    source.refresh_from_db()
    assert (source.status, source.amount_paid, source.balance) == ("payment_due", 0, Decimal("100.00"))
