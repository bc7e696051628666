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
from invoicing.models import Invoice
from tests.consolidation.helpers import ACTOR, enabled_customer, issued_invoice

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


def test_payment_of_a_consolidated_invoice_settles_its_sources(tenant_a, no_enqueue):
    customer = enabled_customer(tenant_a.tenant)
    sources = [issued_invoice(customer, date(2026, 1, 20)), issued_invoice(customer, date(2026, 1, 21), amount="20.00")]
    run = build(tenant_a.tenant, SUNDAY)
    services.drafts_issue(run_pk=run.pk, tenant=tenant_a.tenant, actor=ACTOR, issue_date=SUNDAY)
    ci = ConsolidatedInvoice.objects.get()

    with pytest.raises(services.ValidationFailed):
        services.consolidated_invoice_settle(consolidated_invoice=ci, actor=ACTOR, amount=Decimal("1.00"), currency="EUR")
    paid = services.consolidated_invoice_settle(
        consolidated_invoice=ci, actor=ACTOR, payment_reference="BANK-1", amount=Decimal("120.00"), currency="EUR"
    )
    again = services.consolidated_invoice_settle(consolidated_invoice=ci, actor=ACTOR)

    assert (paid.status, again.status, paid.payment_reference) == ("PAID", "PAID", "BANK-1")
    for source in Invoice.objects.filter(pk__in=[s.pk for s in sources]):
        assert (source.status, source.amount_paid, source.balance) == ("paid", source.total, 0)
        assert source.paid_at is not None


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
