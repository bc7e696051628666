"""A charge given back by a cancelled invoice is billed again, and the cancelled invoice keeps its record."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing.models import Charge
from core.actors import Actor
from invoicing import batch, services
from invoicing.models import Invoice, InvoiceItem
from journeys import engine, scheduling
from tests.factories import ChargeFactory, CustomerFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db
ACTOR = Actor.system("tests")


def _create_with_charge(api, customer, charge):
    return api.post("/api/v1/invoices", {"customer": customer.pk, "charges": [charge.pk]}, format="json")


def test_charge_released_by_a_cancelled_invoice_is_billed_again_over_the_api(api, tenant_a, customer):
    # given a charge drafted onto an invoice that was then cancelled
    charge = ChargeFactory(customer=customer, unit_amount=Decimal("120.50"))
    first = _create_with_charge(api, customer, charge)
    assert first.status_code == 201, first.json()
    assert api.post(f"/api/v1/invoices/{first.json()['id']}/cancel", {}, format="json").status_code == 200

    # when a new invoice takes the released charge
    second = _create_with_charge(api, customer, charge)

    # then it is billed there, and the cancelled invoice still shows the line it carried
    assert second.status_code == 201, second.json()
    charge.refresh_from_db()
    assert charge.invoice_id == second.json()["id"]
    cancelled_line = InvoiceItem.objects.get(invoice_id=first.json()["id"])
    assert cancelled_line.charge_id == charge.pk and cancelled_line.released_at is not None
    assert InvoiceItem.objects.get(invoice_id=second.json()["id"]).released_at is None
    assert Invoice.objects.get(pk=first.json()["id"]).total == Decimal("143.40")  # record intact


def test_a_charge_on_a_live_invoice_is_still_refused_a_second_time(api, tenant_a, customer):
    charge = ChargeFactory(customer=customer)
    assert _create_with_charge(api, customer, charge).status_code == 201

    again = _create_with_charge(api, customer, charge)

    assert again.status_code == 409
    assert InvoiceItem.objects.filter(charge=charge).count() == 1


def _scheduled_run(tenant, user, key, now):
    context = {"tenantId": tenant.slug, "batchId": key, "firstRunAt": now.isoformat(), "interval": "P1M",
               "maxRuns": 12, "gracePeriodDuration": "P7D", "reminderGapDuration": "P7D"}
    schedule = scheduling.schedule_configure(
        journey_name="monthly-invoicing-batch", tenant=tenant, key=key, first_run_at=now, interval="P1M",
        max_runs=12, context=context, user=user, actor=ACTOR,
    )
    (run,) = scheduling.schedule_fire(schedule_id=schedule.pk, actor=ACTOR, now=now)
    return run


def _run_until_pause_or_end(run):
    for _ in range(6):
        run.refresh_from_db()
        if run.phase != "RUNNING" or run.current_state == "waitForFinanceApproval":
            return run
        engine.execute_step(run_pk=run.pk, state_id=run.current_state, actor=ACTOR)
    run.refresh_from_db()
    return run


def test_batch_after_a_failed_validation_bills_the_released_charges(
    tenant_a, django_capture_on_commit_callbacks
):
    # given a batch that failed validation (one customer has no email) and gave its charges back,
    # as the demo data's first occurrence did
    now = datetime(2026, 12, 1, 6, 0, 5, tzinfo=UTC)
    good = CustomerFactory(tenant=tenant_a.tenant, email="ap@airline.example")
    SubscriptionFactory(customer=good, unit_price=Decimal("300.00"), tax_rate=Decimal("0.19"), started_on=date(2026, 1, 1))
    charge = ChargeFactory(customer=good, occurred_at=datetime(2026, 11, 5, tzinfo=UTC))
    no_email = CustomerFactory(tenant=tenant_a.tenant, email="")
    ChargeFactory(customer=no_email, occurred_at=datetime(2026, 11, 6, tzinfo=UTC))
    with django_capture_on_commit_callbacks(execute=False):
        failed = _run_until_pause_or_end(_scheduled_run(tenant_a.tenant, tenant_a.user, "main", now))
    assert failed.output["status"] == "VALIDATION_FAILED"
    assert not Charge.objects.filter(invoice__isnull=False).exists()

    # when the customer is fixed and the next batch drafts the same period
    no_email.email = "billing@example.com"
    no_email.save()
    with django_capture_on_commit_callbacks(execute=False):
        second = _run_until_pause_or_end(_scheduled_run(tenant_a.tenant, tenant_a.user, "retry", now))

    # then it drafts both customers, each charge once on a live line, and asks for approval
    assert (second.phase, second.current_state) == ("RUNNING", "waitForFinanceApproval"), second.output
    assert second.context["batch"]["invoiceCount"] == 2
    charge.refresh_from_db()
    assert charge.invoice.batch_run_id == second.pk
    assert InvoiceItem.objects.filter(charge=charge).count() == 2
    assert InvoiceItem.objects.filter(charge=charge, released_at__isnull=True).get().invoice_id == charge.invoice_id


def test_drafting_again_after_cancelling_the_drafts_rebills_their_charges(tenant_a, actor):
    customer = CustomerFactory(tenant=tenant_a.tenant)
    charge = ChargeFactory(customer=customer, occurred_at=datetime(2026, 11, 5, tzinfo=UTC))
    run = _scheduled_run(tenant_a.tenant, tenant_a.user, "main", datetime(2026, 12, 1, 6, tzinfo=UTC))
    period = batch.previous_month(date(2026, 12, 1))
    batch.batch_draft(tenant=tenant_a.tenant, batch_id="main", run_pk=run.pk, period=period, actor=actor)
    assert batch.batch_cancel_drafts(run_pk=run.pk, actor=actor, reason="test") == 1

    again = batch.batch_draft(tenant=tenant_a.tenant, batch_id="main", run_pk=run.pk, period=period, actor=actor)

    assert again.invoice_count == 1
    charge.refresh_from_db()
    assert charge.invoice.status == "draft"
    # and cancelling through the service gives it back again
    services.invoice_cancel(invoice=charge.invoice, actor=actor, reason="again")
    charge.refresh_from_db()
    assert charge.invoice_id is None
