"""The monthly invoicing batch: configure over the API, draft, validate, approve, send, chase."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import Charge
from core.actors import Actor
from invoicing import batch
from invoicing.models import Invoice, InvoiceItem, TaxItem
from journeys import engine, scheduling
from journeys.models import JourneyRun, JourneySchedule
from tests.conftest import grant_approver, wait_for
from tests.factories import (
    ChargeFactory,
    CustomerFactory,
    MembershipFactory,
    SubscriptionFactory,
    TokenFactory,
    UserFactory,
)
from tests.journeys import contract

ACTOR = Actor.system("tests")
START = "/api/v1/journeys/monthly-invoicing-batch/start"


def config_body(tenant, **overrides):
    body = {"tenantId": tenant.slug, "batchId": "main", "firstRunAt": "2026-12-01T06:00:00Z", "interval": "P1M", "maxRuns": 12}
    body.update(overrides)
    return body


@pytest.fixture
def approver_client(tenant_a):
    user = grant_approver(UserFactory())
    MembershipFactory(tenant=tenant_a.tenant, user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {TokenFactory(user=user).key}")
    return client


@pytest.fixture
def books(tenant_a):
    """November 2026: a full-month subscription, one started mid-month, two unbilled charges."""
    customer = CustomerFactory(tenant=tenant_a.tenant, email="ap@airline.example")
    SubscriptionFactory(customer=customer, unit_price=Decimal("300.00"), tax_rate=Decimal("0.19"), started_on=date(2026, 1, 1))
    SubscriptionFactory(customer=customer, unit_price=Decimal("300.00"), tax_rate=Decimal("0.19"), started_on=date(2026, 11, 21))
    ChargeFactory(customer=customer, unit_amount=Decimal("120.50"), tax_rate=Decimal("0.19"), occurred_at=datetime(2026, 11, 5, tzinfo=UTC))
    ChargeFactory(customer=customer, unit_amount=Decimal("10.00"), tax_rate=Decimal("0.19"), occurred_at=datetime(2026, 11, 30, 22, tzinfo=UTC))
    # after the period: stays unbilled
    ChargeFactory(customer=customer, unit_amount=Decimal("99.00"), tax_rate=Decimal("0.19"), occurred_at=datetime(2026, 12, 1, 1, tzinfo=UTC))
    return customer


# --- Configuration over the API ------------------------------------------------------------------
def test_start_configures_the_schedule_and_answers_the_contracts_outcome(api, tenant_a):
    response = api.post(START, config_body(tenant_a.tenant, channel="email"), format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    contract.assert_config_outcome(body)
    assert body["phase"] == "SUCCEEDED" and body["status"] == "SCHEDULED"
    assert body["output"] == {
        "status": "SCHEDULED", "tenantId": "acme", "batchId": "main", "firstRunAt": "2026-12-01T06:00:00+00:00",
        "interval": "P1M", "maxRuns": 12,
    }
    schedule = JourneySchedule.objects.get()
    assert schedule.periodic_task.enabled and schedule.periodic_task.task == "journeys.fire_schedule"
    assert schedule.context["channel"] == "email"  # extra properties are kept


def test_starting_again_updates_the_same_schedule(api, tenant_a):
    first = api.post(START, config_body(tenant_a.tenant), format="json").json()
    second = api.post(START, config_body(tenant_a.tenant, interval="P1W", maxRuns=3), format="json").json()

    assert first["journeyId"] == second["journeyId"]
    schedule = JourneySchedule.objects.get()
    assert (schedule.interval, schedule.max_runs) == ("P1W", 3)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tenantId": None}, "tenantId"),
        ({"batchId": ""}, "batchId"),
        ({"firstRunAt": "next monday"}, "firstRunAt"),
        ({"firstRunAt": "2026-12-01T06:00:00"}, "firstRunAt"),
        ({"interval": "monthly"}, "interval"),
        ({"interval": "P0D"}, "interval"),
        ({"maxRuns": 0}, "maxRuns"),
        ({"maxRuns": "many"}, "maxRuns"),
        ({"gracePeriodDuration": "a week"}, "gracePeriodDuration"),
        ({"tenantId": "globex"}, "tenantId"),
    ],
)
def test_bad_start_request_is_400_naming_the_field(api, tenant_a, tenant_b, overrides, field):
    body = {k: v for k, v in config_body(tenant_a.tenant, **overrides).items() if v is not None}

    response = api.post(START, body, format="json")

    assert response.status_code == 400
    assert field in [e["field"] for e in response.json()["errors"]]
    assert not JourneySchedule.objects.exists()


# --- Drafting and validation ---------------------------------------------------------------------
def _scheduled_run(tenant, user, *, first_run_at=datetime(2026, 12, 1, 6, tzinfo=UTC), now=datetime(2026, 12, 1, 6, 0, 5, tzinfo=UTC)):
    schedule = scheduling.schedule_configure(
        journey_name="monthly-invoicing-batch", tenant=tenant, key="main", first_run_at=first_run_at, interval="P1M",
        max_runs=12, context=config_body(tenant, gracePeriodDuration="P7D", reminderGapDuration="P7D"), user=user, actor=ACTOR,
    )
    (run,) = scheduling.schedule_fire(schedule_id=schedule.pk, actor=ACTOR, now=now)
    return run


def _step(run):
    run.refresh_from_db()
    return engine.execute_step(run_pk=run.pk, state_id=run.current_state, actor=ACTOR)


@pytest.mark.django_db
def test_drafting_bills_the_previous_month_pro_rata_with_charges_and_tax_items(tenant_a, books, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _scheduled_run(tenant_a.tenant, tenant_a.user)
        _step(run)  # draftInvoices

    invoice = Invoice.objects.get(batch_run=run)
    lines = sorted(InvoiceItem.objects.filter(invoice=invoice).values_list("description", "amount"), key=lambda x: x[1])
    # 300/month: full month, and 10 of 30 days (started 21 Nov); charges 120.50 and 10.00
    assert [a for _, a in lines] == [Decimal("10.00"), Decimal("100.00"), Decimal("120.50"), Decimal("300.00")]
    assert (invoice.period_start, invoice.period_end, invoice.status) == (date(2026, 11, 1), date(2026, 11, 30), "draft")
    assert invoice.subtotal == Decimal("530.50")
    assert invoice.tax_total == sum(TaxItem.objects.filter(invoice=invoice).values_list("amount", flat=True)) == Decimal("100.80")
    assert invoice.total == invoice.balance == Decimal("631.30")
    assert Charge.objects.filter(invoice=invoice).count() == 2
    assert Charge.objects.filter(invoice__isnull=True).count() == 1  # December's charge waits
    run.refresh_from_db()
    assert run.context["batch"] == {"invoiceCount": 1, "totalsByCurrency": {"EUR": "631.30"}}


@pytest.mark.django_db
def test_drafting_twice_for_the_same_period_creates_nothing_more(tenant_a, books, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _scheduled_run(tenant_a.tenant, tenant_a.user)
        _step(run)
    period = batch.previous_month(date(2026, 12, 1))

    again = batch.batch_draft(tenant=tenant_a.tenant, batch_id="main", run_pk=run.pk, period=period, actor=ACTOR)

    assert again.invoice_count == 1
    assert Invoice.objects.count() == 1 and InvoiceItem.objects.count() == 4


@pytest.mark.django_db
def test_subscription_cancelled_mid_period_is_billed_to_its_cancellation(tenant_a, django_capture_on_commit_callbacks):
    customer = CustomerFactory(tenant=tenant_a.tenant)
    SubscriptionFactory(
        customer=customer, unit_price=Decimal("300.00"), tax_rate=Decimal("0"), started_on=date(2026, 1, 1),
        status="cancelled", cancelled_at=datetime(2026, 11, 16, 9, tzinfo=UTC), cancellation_source="UI",
    )
    with django_capture_on_commit_callbacks(execute=False):
        run = _scheduled_run(tenant_a.tenant, tenant_a.user)
        _step(run)

    assert Invoice.objects.get(batch_run=run).subtotal == Decimal("150.00")  # 15 of 30 days


@pytest.mark.django_db
def test_validation_failure_ends_the_run_without_an_approval_step(api, tenant_a, books, django_capture_on_commit_callbacks):
    CustomerFactory(tenant=tenant_a.tenant, email="")  # no email and …
    ChargeFactory(customer=books.__class__.objects.filter(email="").get(), tax_rate=None, occurred_at=datetime(2026, 11, 3, tzinfo=UTC))
    with django_capture_on_commit_callbacks(execute=False):
        run = _scheduled_run(tenant_a.tenant, tenant_a.user)
        _step(run)  # draft
        _step(run)  # validate
        _step(run)  # record failure

    run.refresh_from_db()
    assert (run.phase, run.output["status"]) == ("SUCCEEDED", "VALIDATION_FAILED")
    kinds = {issue["kind"] for issue in run.output["lastRun"]["issues"]}
    assert kinds == {"no_email", "missing_tax_rate"}
    assert set(Invoice.objects.filter(batch_run=run).values_list("status", flat=True)) == {"cancelled"}
    assert Charge.objects.filter(invoice__isnull=False).count() == 0  # released for the next run
    status = api.get(f"/api/v1/journeys/{run.journey_id}").json()
    contract.assert_status(status)
    assert "approveInvoiceBatch" not in status["_links"]
    config = api.get(f"/api/v1/journeys/{run.parent.journey_id}/result").json()
    assert config["output"]["lastRun"]["status"] == "VALIDATION_FAILED"


# --- Approval over the API -----------------------------------------------------------------------
@pytest.mark.django_db
def test_rejected_batch_sends_nothing(api, approver_client, tenant_a, books, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _scheduled_run(tenant_a.tenant, tenant_a.user)
        _step(run)
        _step(run)
    status = api.get(f"/api/v1/journeys/{run.journey_id}").json()
    contract.assert_status(status)
    assert status["currentState"] == "waitForFinanceApproval"
    assert status["_links"]["approveInvoiceBatch"]["method"] == "POST"
    assert status["approvalSummary"]["invoiceCount"] == 1
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = approver_client.post(
            f"/api/v1/journeys/{run.journey_id}/steps/approveInvoiceBatch", {"decision": "REJECTED", "comment": "wrong prices"}, format="json"
        )
    _step(run)

    assert response.status_code == 200
    contract.assert_approval_response(response.json())
    run.refresh_from_db()
    assert (run.phase, run.output["lastRun"]["status"], run.output["lastRun"]["reason"]) == ("SUCCEEDED", "REJECTED", "wrong prices")
    assert mail.outbox == []
    assert set(Invoice.objects.filter(batch_run=run).values_list("status", flat=True)) == {"cancelled"}


@pytest.mark.django_db
def test_approval_step_refuses_bad_bodies_and_stays_waiting(api, approver_client, tenant_a, books, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _scheduled_run(tenant_a.tenant, tenant_a.user)
        _step(run)
        _step(run)
    url = f"/api/v1/journeys/{run.journey_id}/steps/approveInvoiceBatch"

    for body in ({}, {"decision": "MAYBE"}, {"decision": "APPROVED", "signature": "x"}):
        response = approver_client.post(url, body, format="json")
        assert response.status_code == 400, body
    run.refresh_from_db()
    assert run.current_state == "waitForFinanceApproval"


@pytest.mark.django_db
def test_preparer_cannot_approve_over_the_api(api, tenant_a, books, django_capture_on_commit_callbacks):
    grant_approver(tenant_a.user)
    with django_capture_on_commit_callbacks(execute=False):
        run = _scheduled_run(tenant_a.tenant, tenant_a.user)
        _step(run)
        _step(run)

    response = api.post(f"/api/v1/journeys/{run.journey_id}/steps/approveInvoiceBatch", {"decision": "APPROVED"}, format="json")

    assert response.status_code == 403


@pytest.mark.django_db
def test_other_tenants_runs_are_404(tenant_a, tenant_b, books, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _scheduled_run(tenant_a.tenant, tenant_a.user)
    other = tenant_b.client
    grant_approver(tenant_b.user)  # may decide in its own tenant: still nothing of acme's exists for it

    assert other.get(f"/api/v1/journeys/{run.journey_id}").status_code == 404
    assert other.get(f"/api/v1/journeys/{run.journey_id}/result").status_code == 404
    assert other.post(f"/api/v1/journeys/{run.journey_id}/steps/cancel", {}, format="json").status_code == 404
    assert other.post(f"/api/v1/journeys/{run.journey_id}/steps/approveInvoiceBatch", {"decision": "APPROVED"}, format="json").status_code == 404
    listing = other.get("/api/v1/journeys?tenantId=acme").json()
    contract.assert_list(listing)
    assert listing["items"] == []


@pytest.mark.django_db
def test_list_shows_runs_waiting_for_approval_with_paging(api, tenant_a, books, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _scheduled_run(tenant_a.tenant, tenant_a.user)
        _step(run)
        _step(run)

    waiting = api.get("/api/v1/journeys?journeyName=monthly-invoicing-batch&phase=RUNNING&tenantId=acme").json()
    contract.assert_list(waiting)
    assert [item["journeyId"] for item in waiting["items"]] == [run.journey_id]
    page = api.get("/api/v1/journeys?pageSize=1").json()
    assert len(page["items"]) == 1 and page["nextPageToken"]
    rest = api.get(f"/api/v1/journeys?pageSize=1&pageToken={page['nextPageToken']}").json()
    assert rest["items"][0]["journeyId"] != page["items"][0]["journeyId"]
    assert api.get("/api/v1/journeys?phase=Running").status_code == 400
    assert api.get("/api/v1/journeys?pageToken=%%%").status_code == 400


@pytest.mark.django_db
def test_result_is_409_while_running_and_cancel_is_idempotent(api, tenant_a, books, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _scheduled_run(tenant_a.tenant, tenant_a.user)

    assert api.get(f"/api/v1/journeys/{run.journey_id}/result").status_code == 409
    first = api.post(f"/api/v1/journeys/{run.journey_id}/steps/cancel", {}, format="json")
    second = api.post(f"/api/v1/journeys/{run.journey_id}/steps/cancel", {}, format="json")
    assert first.status_code == second.status_code == 200
    outcome = api.get(f"/api/v1/journeys/{run.journey_id}/result").json()
    contract.assert_outcome(outcome)
    assert (outcome["phase"], outcome["error"]["code"]) == ("FAILED", "JOURNEY_CANCELLED")


# --- The whole journey through a real worker -----------------------------------------------------
def test_happy_path_end_to_end_through_a_real_worker(celery_worker, tenant_a):
    customer = CustomerFactory(tenant=tenant_a.tenant, email="ap@airline.example")
    SubscriptionFactory(customer=customer, unit_price=Decimal("300.00"), tax_rate=Decimal("0.19"), started_on=date(2026, 1, 1))
    late_payer = CustomerFactory(tenant=tenant_a.tenant, email="ap@late.example")
    SubscriptionFactory(customer=late_payer, unit_price=Decimal("50.00"), tax_rate=Decimal("0.19"), started_on=date(2026, 1, 1))
    approver = grant_approver(UserFactory())
    MembershipFactory(tenant=tenant_a.tenant, user=approver)
    approver_api = APIClient()
    approver_api.credentials(HTTP_AUTHORIZATION=f"Token {TokenFactory(user=approver).key}")
    mail.outbox.clear()

    # configured over the API; beat's tick starts the occurrence; the worker drafts and validates
    assert tenant_a.client.post(START, config_body(tenant_a.tenant, firstRunAt="2026-11-01T06:00:00Z"), format="json").status_code == 200
    (run,) = scheduling.schedule_fire(schedule_id=JourneySchedule.objects.get().pk, actor=ACTOR, now=datetime(2026, 11, 1, 6, 1, tzinfo=UTC))
    wait_for(lambda: JourneyRun.objects.filter(pk=run.pk, current_state="waitForFinanceApproval").exists())

    # approved: numbered, payment_due, emailed with the PDF
    response = approver_api.post(f"/api/v1/journeys/{run.journey_id}/steps/approveInvoiceBatch", {"decision": "APPROVED", "comment": "ok"}, format="json")
    assert response.status_code == 200
    contract.assert_approval_response(response.json())
    wait_for(lambda: JourneyRun.objects.filter(pk=run.pk, current_state="waitBeforeFirstReminder").exists())
    invoices = Invoice.objects.filter(batch_run=run).order_by("id")
    assert [i.status for i in invoices] == ["payment_due", "payment_due"]
    assert all(i.number and i.sent_at for i in invoices)
    assert len(mail.outbox) == 2
    assert mail.outbox[0].attachments[0][2] == "application/pdf" and mail.outbox[0].attachments[0][1].startswith(b"%PDF")
    run.refresh_from_db()
    assert run.context["lastRun"]["status"] == "SENT" and run.context["lastRun"]["sentCount"] == 2

    # the first customer pays; after the due date plus the grace period only the other is reminded
    paid = invoices[0]
    Invoice.objects.filter(pk=paid.pk).update(status="paid", amount_paid=paid.total, balance=0, paid_at=timezone.now())
    due = max(i.due_date for i in invoices)
    with time_machine.travel(datetime.combine(due, datetime.min.time(), tzinfo=UTC) + timedelta(days=8, hours=1)):
        assert engine.timers_fire_due(actor=ACTOR) == 1
    wait_for(lambda: JourneyRun.objects.filter(pk=run.pk, current_state="waitBeforeFinalNotice").exists())
    with time_machine.travel(timezone.now() + timedelta(days=7, minutes=1)):
        assert engine.timers_fire_due(actor=ACTOR) == 1
    done = wait_for(lambda: JourneyRun.objects.filter(pk=run.pk, phase="SUCCEEDED").first())

    assert done.output["lastRun"]["status"] == "CHASE_COMPLETED"
    assert (done.output["lastRun"]["remindedCount"], done.output["lastRun"]["finalNoticeCount"]) == (1, 1)
    subjects = [m.subject for m in mail.outbox]
    assert sum(s.startswith("Reminder") for s in subjects) == 1 and sum(s.startswith("Final notice") for s in subjects) == 1
    outcome = tenant_a.client.get(f"/api/v1/journeys/{run.journey_id}/result").json()
    contract.assert_outcome(outcome)
    config = tenant_a.client.get(f"/api/v1/journeys/{run.parent.journey_id}/result").json()
    contract.assert_config_outcome(config)
    assert config["output"]["lastRun"]["status"] == "CHASE_COMPLETED"
