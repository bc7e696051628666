"""The daily write-off's services, called directly: who is a candidate, how balances reach zero."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from invoicing.models import InvoiceAdjustment
from journeys.models import ApprovalPolicy
from tests.factories import CustomerFactory
from tests.writeoffs.helpers import (
    ACTOR,
    cancelled_subscription,
    start_run,
    step,
    unbalanced_invoice,
    unwritable_invoice,
)
from writeoffs import services
from writeoffs.models import WriteOffCandidate
from writeoffs.providers import Line, WriteOffFailed, plan_adjustments

RUN_DAY = date(2026, 3, 10)
NY = ZoneInfo("America/New_York")


@pytest.fixture
def never_approve(tenant_a):
    return ApprovalPolicy.objects.create(tenant=tenant_a.tenant, journey_name="daily-write-off", mode="never")


def find(tenant, day=RUN_DAY):
    run = start_run(tenant, day)
    step(run, "findCandidates")
    return run


def apply(run):
    ids = list(WriteOffCandidate.objects.filter(run=run).values_list("pk", flat=True))
    return services.writeoff_apply_chunk(run_pk=run.pk, candidate_ids=ids, actor=ACTOR)


@pytest.mark.django_db
def test_window_is_one_to_five_business_days_before_the_run(tenant_a, settings, django_capture_on_commit_callbacks):
    # given a business zone west of UTC and cancellations just inside and just outside each edge
    settings.BUSINESS_TIME_ZONE = "America/New_York"
    tenant = tenant_a.tenant
    edges = {
        "first-day-start": datetime(2026, 3, 5, 0, 0, tzinfo=NY),
        "before-window": datetime(2026, 3, 4, 23, 59, 59, tzinfo=NY),
        "last-day-end": datetime(2026, 3, 9, 23, 59, 59, tzinfo=NY),
        "run-day": datetime(2026, 3, 10, 0, 0, tzinfo=NY),
    }
    invoices = {name: unbalanced_invoice(cancelled_subscription(tenant, at=at)) for name, at in edges.items()}

    # when
    with django_capture_on_commit_callbacks(execute=False):
        run = find(tenant)

    # then: 2026-03-05 00:00 New York is 05:00 UTC; a UTC window would have got both edges wrong
    found = set(WriteOffCandidate.objects.filter(run=run).values_list("invoice_id", flat=True))
    assert found == {invoices["first-day-start"].pk, invoices["last-day-end"].pk}


@pytest.mark.django_db
def test_every_unbalanced_open_invoice_of_the_cancelled_subscription_is_a_candidate(tenant_a, django_capture_on_commit_callbacks):
    tenant = tenant_a.tenant
    at = datetime(2026, 3, 8, 12, tzinfo=ZoneInfo("UTC"))
    sub = cancelled_subscription(tenant, at=at, source="SALESFORCE")
    older = unbalanced_invoice(sub, issue_date=date(2025, 11, 1), status="payment_due")  # not issued by the cancellation
    latest = unbalanced_invoice(sub, status="partially_paid", paid="10")
    settled = unbalanced_invoice(sub, paid="119.00")  # balance zero
    api_cancelled = unbalanced_invoice(cancelled_subscription(tenant, at=at, source="API"))
    other_customer_sub = cancelled_subscription(tenant, at=at, customer=CustomerFactory(tenant=tenant))
    other = unbalanced_invoice(other_customer_sub)

    with django_capture_on_commit_callbacks(execute=False):
        run = find(tenant)

    found = dict(WriteOffCandidate.objects.filter(run=run).values_list("invoice_id", "source"))
    assert found == {older.pk: "SALESFORCE", latest.pk: "SALESFORCE", other.pk: "MMA"}
    assert settled.pk not in found and api_cancelled.pk not in found
    assert run.context["candidates"]["totalsByCurrency"] == {"EUR": "347.0000"}
    assert run.context["candidates"]["totalsBySource"] == {"MMA": {"EUR": "119.0000"}, "SALESFORCE": {"EUR": "228.0000"}}


def test_plan_takes_the_largest_lines_first_for_a_positive_balance():
    lines = [
        Line("item-1", "InvoiceDetail", Decimal("20")),
        Line("tax-1", "Tax", Decimal("3.80")),
        Line("item-2", "InvoiceDetail", Decimal("100")),
        Line("tax-2", "Tax", Decimal("19")),
        Line("item-3", "InvoiceDetail", Decimal("0")),
    ]

    plan = plan_adjustments(Decimal("122.80"), lines)

    assert [(p.line.ref, p.type, p.amount) for p in plan] == [
        ("item-2", "Credit", Decimal("100")),
        ("item-1", "Credit", Decimal("20")),
        ("tax-2", "Credit", Decimal("2.80")),
    ]


def test_plan_charges_only_negative_lines_largest_first_for_a_negative_balance():
    lines = [
        Line("item-1", "InvoiceDetail", Decimal("100")),
        Line("tax-1", "Tax", Decimal("19")),
        Line("item-2", "InvoiceDetail", Decimal("-5")),
        Line("item-3", "InvoiceDetail", Decimal("-40")),
    ]

    plan = plan_adjustments(Decimal("-30"), lines)

    assert [(p.line.ref, p.type, p.amount) for p in plan] == [("item-3", "Charge", Decimal("30"))]


def test_plan_credits_only_positive_lines_of_a_positive_balance():
    # the issue's invoice: balance 47.50, item A +40.00 with tax 8.00, item B -12.00
    lines = [
        Line("item-A", "InvoiceDetail", Decimal("40.00")),
        Line("tax-A", "Tax", Decimal("8.00")),
        Line("item-B", "InvoiceDetail", Decimal("-12.00")),
    ]

    plan = plan_adjustments(Decimal("47.50"), lines)

    assert [(p.line.ref, p.type, p.amount) for p in plan] == [
        ("item-A", "Credit", Decimal("40.00")),
        ("tax-A", "Credit", Decimal("7.50")),
    ]


def test_plan_never_uses_lines_of_the_other_sign_to_reach_zero():
    with pytest.raises(WriteOffFailed, match="negative balance takes charges on negative lines only"):
        plan_adjustments(Decimal("-30"), [Line("item-1", "InvoiceDetail", Decimal("100")), Line("item-2", "InvoiceDetail", Decimal("-10"))])
    with pytest.raises(WriteOffFailed, match="positive balance takes credits on positive lines only"):
        plan_adjustments(Decimal("30"), [Line("item-1", "InvoiceDetail", Decimal("20")), Line("item-2", "InvoiceDetail", Decimal("-100"))])


def test_plan_that_cannot_reach_zero_is_refused():
    with pytest.raises(WriteOffFailed):
        plan_adjustments(Decimal("50"), [Line("item-1", "InvoiceDetail", Decimal("20"))])


@pytest.mark.django_db
def test_local_write_off_uses_items_and_tax_items_with_fewest_adjustments(tenant_a, django_capture_on_commit_callbacks):
    tenant = tenant_a.tenant
    sub = cancelled_subscription(tenant, at=datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC")))
    # items 100, 50, 20 with 19 % tax (19, 9.50, 3.80): total 202.30, unpaid
    invoice = unbalanced_invoice(sub, lines=[("50.00", "0.19"), ("100.00", "0.19"), ("20.00", "0.19")], status="payment_due")

    with django_capture_on_commit_callbacks(execute=False):
        run = find(tenant)
        apply(run)

    invoice.refresh_from_db()
    adjustments = list(InvoiceAdjustment.objects.filter(invoice=invoice).order_by("id"))
    assert [(a.invoice_item_id is not None, a.amount) for a in adjustments] == [
        (True, Decimal("100.0000")),
        (True, Decimal("50.0000")),
        (True, Decimal("20.0000")),
        (False, Decimal("19.0000")),
        (False, Decimal("9.5000")),
        (False, Decimal("3.8000")),
    ]
    assert (invoice.balance, invoice.status, invoice.amount_credited) == (Decimal("0"), "written_off", Decimal("202.30"))
    assert adjustments[0].idempotency_key == f"writeoff:{invoice.pk}:item-{adjustments[0].invoice_item_id}:2026-03-10"
    candidate = WriteOffCandidate.objects.get(run=run)
    assert (candidate.status, candidate.adjustments, candidate.written_off_amount) == ("succeeded", 6, Decimal("202.30"))


@pytest.mark.django_db
def test_partly_paid_invoice_needs_only_the_largest_lines(tenant_a, django_capture_on_commit_callbacks):
    tenant = tenant_a.tenant
    sub = cancelled_subscription(tenant, at=datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC")))
    invoice = unbalanced_invoice(sub, lines=[("50.00", "0.19"), ("100.00", "0.19"), ("20.00", "0.19")], paid="100.00")

    with django_capture_on_commit_callbacks(execute=False):
        apply(find(tenant))

    invoice.refresh_from_db()
    assert list(InvoiceAdjustment.objects.filter(invoice=invoice).order_by("id").values_list("amount", flat=True)) == [
        Decimal("100.0000"),
        Decimal("2.3000"),
    ]
    assert (invoice.balance, invoice.status) == (Decimal("0"), "written_off")


@pytest.mark.django_db
def test_item_with_less_available_than_the_balance_is_taken_whole_then_the_next(tenant_a, django_capture_on_commit_callbacks):
    from invoicing import services as invoicing

    tenant = tenant_a.tenant
    sub = cancelled_subscription(tenant, at=datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC")))
    invoice = unbalanced_invoice(sub, lines=[("100.00", None), ("50.00", None)])
    big = invoice.items.get(amount=Decimal("100"))
    invoicing.invoice_adjust(invoice=invoice, actor=ACTOR, type="credit", amount=Decimal("80"), reason="goodwill", source="api", idempotency_key="gw", invoice_item=big)

    with django_capture_on_commit_callbacks(execute=False):
        apply(find(tenant))

    invoice.refresh_from_db()
    new = InvoiceAdjustment.objects.filter(invoice=invoice, source="writeoff").order_by("id")
    assert [(a.invoice_item.amount, a.amount) for a in new] == [(Decimal("50.0000"), Decimal("50.0000")), (Decimal("100.0000"), Decimal("20.0000"))]
    assert invoice.balance == Decimal("0")


@pytest.mark.django_db
def test_one_invoice_that_cannot_reach_zero_fails_alone(tenant_a, django_capture_on_commit_callbacks):
    tenant = tenant_a.tenant
    sub = cancelled_subscription(tenant, at=datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC")))
    good = unbalanced_invoice(sub)
    bad = unwritable_invoice(sub)  # balance 119.00, no line with anything left to credit

    with django_capture_on_commit_callbacks(execute=False):
        run = find(tenant)
        apply(run)

    statuses = dict(WriteOffCandidate.objects.filter(run=run).values_list("invoice_id", "status"))
    assert statuses == {good.pk: "succeeded", bad.pk: "failed"}
    assert "cannot bring the balance" in WriteOffCandidate.objects.get(invoice=bad).error
    assert not InvoiceAdjustment.objects.filter(invoice=bad).exists()


@pytest.mark.django_db
def test_applying_a_chunk_twice_applies_nothing_twice(tenant_a, django_capture_on_commit_callbacks):
    tenant = tenant_a.tenant
    sub = cancelled_subscription(tenant, at=datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC")))
    invoices = [unbalanced_invoice(sub) for _ in range(3)]

    with django_capture_on_commit_callbacks(execute=False):
        run = find(tenant)
        first, second = apply(run), apply(run)
        again = start_run(tenant, RUN_DAY)

    assert (first, second) == (3, 0)
    assert again.pk == run.pk
    assert InvoiceAdjustment.objects.filter(invoice__in=invoices).count() == 6


@pytest.mark.django_db
def test_run_never_touches_another_tenant(tenant_a, tenant_b, django_capture_on_commit_callbacks):
    at = datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC"))
    mine = unbalanced_invoice(cancelled_subscription(tenant_a.tenant, at=at))
    theirs = unbalanced_invoice(cancelled_subscription(tenant_b.tenant, at=at))
    with django_capture_on_commit_callbacks(execute=False):
        run = find(tenant_a.tenant)
        # even a chunk handed another tenant's candidate ids leaves them alone
        foreign = start_run(tenant_b.tenant, RUN_DAY)
        step(foreign, "findCandidates")
        all_ids = list(WriteOffCandidate.objects.values_list("pk", flat=True))
        services.writeoff_apply_chunk(run_pk=run.pk, candidate_ids=all_ids, actor=ACTOR)

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, theirs.status) == ("written_off", "overdue")
    assert theirs.balance == Decimal("119.00")
    assert WriteOffCandidate.objects.get(invoice=theirs).status == "pending"


@pytest.mark.django_db
def test_written_off_changes_are_audited_as_the_task(tenant_a, django_capture_on_commit_callbacks):
    from audit.models import Event

    sub = cancelled_subscription(tenant_a.tenant, at=datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC")))
    invoice = unbalanced_invoice(sub, status="payment_due")
    with django_capture_on_commit_callbacks(execute=False):
        apply(find(tenant_a.tenant))

    statuses = list(
        Event.objects.filter(object_type="invoicing.invoice", object_id=invoice.pk, reason="daily write-off")
        .order_by("id")
        .values_list("new_values__status", flat=True)
    )
    assert statuses == ["overdue", "written_off"]


def test_window_edges_are_business_midnights(settings):
    settings.BUSINESS_TIME_ZONE = "Pacific/Auckland"
    start, end = services.cancellation_window(RUN_DAY)
    assert (start.isoformat(), end.isoformat()) == ("2026-03-05T00:00:00+13:00", "2026-03-10T00:00:00+13:00")
    assert end - start == timedelta(days=5)


@pytest.mark.django_db
def test_a_source_of_an_issued_consolidated_invoice_is_not_written_off_on_its_own(tenant_a, django_capture_on_commit_callbacks):
    from invoicing.models import Invoice

    tenant = tenant_a.tenant
    sub = cancelled_subscription(tenant, at=datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC")))
    consolidated, later = unbalanced_invoice(sub), unbalanced_invoice(sub)
    Invoice.objects.filter(pk=consolidated.pk).update(consolidated_into_id=7, consolidated_into_number="CONS-2026-M03-001")

    with django_capture_on_commit_callbacks(execute=False):
        run = find(tenant)
        # consolidated after the candidates were found: the apply step refuses it with the reason
        Invoice.objects.filter(pk=later.pk).update(consolidated_into_id=8, consolidated_into_number="CONS-2026-M03-002")
        apply(run)

    candidates = list(WriteOffCandidate.objects.filter(run=run).values_list("invoice_id", "status", "error"))
    assert candidates == [(later.pk, "failed", "on consolidated invoice CONS-2026-M03-002: it changes only through the consolidated invoice")]
    assert not InvoiceAdjustment.objects.exists()
