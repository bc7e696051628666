"""The journey daily-consolidation: beat start once per day, approval per policy, issue, email."""

from datetime import UTC, date, datetime

import pytest
import time_machine
from django.core import mail
from django.test import override_settings

from consolidation import tasks
from consolidation.models import ConsolidatedInvoice
from journeys import engine
from journeys.models import ApprovalPolicy, JourneyChunk, JourneyRun
from operations.setup_services import declared_schedules
from tests.conftest import grant_approver, wait_for
from tests.consolidation.helpers import ACTOR, enabled_customer, issued_invoice
from tests.factories import MembershipFactory, UserFactory

# 01:00 UTC on Sunday 25 Jan 2026, the last day of the week from Monday 19 Jan
RUN_AT = datetime(2026, 1, 25, 1, 0, tzinfo=UTC)


def drive(run):
    """Execute queued steps and Map chunks in-process until the run pauses or ends."""
    run.refresh_from_db()
    while run.phase == "RUNNING" and run.waiting_for in ("task", "map"):
        if run.waiting_for == "map":
            for chunk in JourneyChunk.objects.filter(run=run, status="pending"):
                engine.execute_chunk(chunk_pk=chunk.pk, actor=ACTOR)
        else:
            engine.execute_step(run_pk=run.pk, state_id=run.current_state, actor=ACTOR)
        run.refresh_from_db()
    return run


@pytest.fixture
def approver(tenant_a):
    user = UserFactory()
    MembershipFactory(tenant=tenant_a.tenant, user=user)
    return grant_approver(user)


def test_task_names_are_pinned_and_daily_entry_is_a_fixed_crontab():
    assert tasks.start_daily_runs.name == "consolidation.start_daily_runs"
    assert tasks.send_consolidated_invoices.name == "consolidation.send_consolidated_invoices"
    assert tasks.mark_overdue.name == "consolidation.mark_overdue"
    daily = next(s for s in declared_schedules() if s.task == "consolidation.start_daily_runs")
    assert (daily.hour, daily.minute) == ("1", "0")


@pytest.mark.django_db
def test_two_beats_start_one_run_per_tenant_and_day(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        customer = enabled_customer(tenant_a.tenant)
        issued_invoice(customer, date(2026, 1, 20))
        with time_machine.travel(RUN_AT):
            assert tasks.start_daily_runs.apply().get() == 1
            assert tasks.start_daily_runs.apply().get() == 0

    run = JourneyRun.objects.get(journey_name="daily-consolidation")
    assert (run.dedupe_key, run.context["businessDate"]) == ("daily:2026-01-25", "2026-01-25")


@pytest.mark.django_db
@override_settings(BUSINESS_TIME_ZONE="Europe/Berlin")
def test_business_date_is_read_in_the_business_zone_across_a_dst_change(tenant_a, django_capture_on_commit_callbacks):
    # Sunday 25 Oct 2026 is the night CEST ends; 23:30 UTC on Saturday 24 is 01:30 CEST on Sunday 25
    with django_capture_on_commit_callbacks(execute=False):
        customer = enabled_customer(tenant_a.tenant, start_day=1)
        issued_invoice(customer, date(2026, 10, 20))
        with time_machine.travel(datetime(2026, 10, 24, 23, 30, tzinfo=UTC)):
            tasks.start_daily_runs.apply()

    assert JourneyRun.objects.get().context["businessDate"] == "2026-10-25"
    assert JourneyRun.objects.get().context["businessDate"] != "2026-10-24"


@pytest.mark.django_db
def test_policy_always_waits_for_approval_then_issues(tenant_a, approver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        customer = enabled_customer(tenant_a.tenant)
        issued_invoice(customer, date(2026, 1, 20), amount="100.00")
        with time_machine.travel(RUN_AT):
            tasks.start_daily_runs.apply()
        run = drive(JourneyRun.objects.get())
        assert (run.current_state, run.waiting_for) == ("awaitApproval", "approval")
        assert ConsolidatedInvoice.objects.get().status == "DRAFT"

        from journeys.selectors import run_status

        summary = run_status(run)["approvalSummary"]
        assert (summary["consolidatedInvoices"], summary["totalsByCurrency"]) == (1, {"EUR": "100.0000"})
        engine.run_decide(run=run, step_id="approveConsolidation", decision="APPROVED", comment="", user=approver, actor=ACTOR)
        run = drive(run)

    assert (run.phase, run.output["status"], run.output["issued"]) == ("SUCCEEDED", "ISSUED", 1)
    assert ConsolidatedInvoice.objects.get().status == "PENDING"


@pytest.mark.django_db
def test_rejection_cancels_the_drafts(tenant_a, approver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        customer = enabled_customer(tenant_a.tenant)
        issued_invoice(customer, date(2026, 1, 20))
        with time_machine.travel(RUN_AT):
            tasks.start_daily_runs.apply()
        run = drive(JourneyRun.objects.get())
        engine.run_decide(run=run, step_id="approveConsolidation", decision="REJECTED", comment="no", user=approver, actor=ACTOR)
        run = drive(run)

    assert run.output["status"] == "REJECTED"
    assert ConsolidatedInvoice.objects.get().status == "CANCELLED"


@pytest.mark.django_db
def test_below_threshold_issues_without_approval(tenant_a, django_capture_on_commit_callbacks):
    ApprovalPolicy.objects.create(
        tenant=tenant_a.tenant, journey_name="daily-consolidation", mode="above_threshold", threshold_amount=500, threshold_currency="EUR"
    )
    with django_capture_on_commit_callbacks(execute=False):
        customer = enabled_customer(tenant_a.tenant)
        issued_invoice(customer, date(2026, 1, 20), amount="100.00")
        with time_machine.travel(RUN_AT):
            tasks.start_daily_runs.apply()
        run = drive(JourneyRun.objects.get())

    assert run.output["status"] == "ISSUED"


@pytest.mark.django_db
def test_nobody_due_ends_the_run_with_nothing_to_do(tenant_a, django_capture_on_commit_callbacks):
    from consolidation import services

    with django_capture_on_commit_callbacks(execute=False), time_machine.travel(RUN_AT):
        run = services.consolidation_trigger(tenant=tenant_a.tenant, actor=ACTOR)
    run = drive(run)

    assert run.output["status"] == "NOTHING_TO_CONSOLIDATE"


def test_daily_run_issues_and_emails_with_pdf_through_a_real_worker(celery_worker):
    # given a tenant that never asks for approval and a customer with two invoices this week
    from tests.factories import TenantFactory

    tenant = TenantFactory()
    ApprovalPolicy.objects.create(tenant=tenant, journey_name="daily-consolidation", mode="never")
    customer = enabled_customer(tenant, email="ap@airline.example")
    with time_machine.travel(datetime(2026, 1, 21, 12, 0, tzinfo=UTC), tick=True):
        issued_invoice(customer, date(2026, 1, 20))
        issued_invoice(customer, date(2026, 1, 21))
    wait_for(lambda: len(mail.outbox) == 2)
    mail.outbox.clear()

    # when beat fires on Sunday (twice)
    with time_machine.travel(RUN_AT, tick=True):
        tasks.start_daily_runs.delay()
        tasks.start_daily_runs.delay()
        # then the worker runs the journey once: one consolidated invoice, issued and emailed once
        ci = wait_for(lambda: ConsolidatedInvoice.objects.filter(sent_at__isnull=False).first())
    assert ci.number == "CONS-2026-W04-001"
    assert JourneyRun.objects.filter(journey_name="daily-consolidation").count() == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert ci.number in message.subject
    name, content, mimetype = message.attachments[0]
    assert (name, mimetype) == ("CONS-2026-W04-001.pdf", "application/pdf")
    assert content.startswith(b"%PDF")
