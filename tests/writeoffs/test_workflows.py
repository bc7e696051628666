"""The daily-write-off journey: approval policies, the generic journeys API, report and notification."""

import hashlib
import hmac
import json
import threading
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail

from journeys import engine
from journeys.models import ApprovalPolicy, JourneyChunk, JourneyTimer
from tests.conftest import grant_approver
from tests.factories import MembershipFactory, UserFactory
from tests.writeoffs.helpers import (
    ACTOR,
    cancelled_subscription,
    start_run,
    step,
    unbalanced_invoice,
    unwritable_invoice,
)
from writeoffs import services, tasks
from writeoffs.models import WriteOffCandidate, WriteOffReport

DAY = date(2026, 3, 10)
CANCELLED = datetime(2026, 3, 8, 9, tzinfo=ZoneInfo("UTC"))


@pytest.fixture
def approver(tenant_a):
    user = UserFactory()
    MembershipFactory(tenant=tenant_a.tenant, user=user)
    return grant_approver(user)


def policy(tenant, mode, amount=None):
    return ApprovalPolicy.objects.create(
        tenant=tenant, journey_name="daily-write-off", mode=mode, threshold_amount=amount, threshold_currency="EUR" if amount is not None else ""
    )


def run_to_end(run):
    """Drive the steps in this process (no worker): split the candidates into chunks, run each, report."""
    step(run, "applyWriteOffs")
    for chunk in JourneyChunk.objects.filter(run=run).order_by("index"):
        engine.execute_chunk(chunk_pk=chunk.pk, actor=ACTOR)
    run.refresh_from_db()
    step(run, "report")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "threshold", "waits"),
    [("always", None, True), ("never", None, False), ("above_threshold", Decimal("500"), False), ("above_threshold", Decimal("100"), True)],
)
def test_approval_follows_the_tenant_policy(tenant_a, mode, threshold, waits, django_capture_on_commit_callbacks):
    policy(tenant_a.tenant, mode, threshold)
    unbalanced_invoice(cancelled_subscription(tenant_a.tenant, at=CANCELLED))  # 119.00 EUR

    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(tenant_a.tenant, DAY)
        step(run, "findCandidates")

    assert run.current_state == ("awaitApproval" if waits else "applyWriteOffs")


@pytest.mark.django_db
def test_approver_sees_candidates_and_approves_through_the_journeys_api(tenant_a, approver, django_capture_on_commit_callbacks):
    sub = cancelled_subscription(tenant_a.tenant, at=CANCELLED, source="UI")
    invoice = unbalanced_invoice(sub)
    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(tenant_a.tenant, DAY)
        step(run, "findCandidates")

    status = tenant_a.client.get(f"/api/v1/journeys/{run.journey_id}").json()
    assert status["currentState"] == "awaitApproval"
    summary = status["approvalSummary"]
    assert (summary["count"], summary["totalsByCurrency"], summary["totalsBySource"]) == (1, {"EUR": "119.0000"}, {"UI": {"EUR": "119.0000"}})
    assert summary["candidates"][0]["invoiceNumber"] == invoice.number
    assert "approveWriteOff" in status["_links"]

    approver_client = tenant_a.client.__class__()
    approver_client.force_authenticate(approver)
    with django_capture_on_commit_callbacks(execute=False):
        answer = approver_client.post(f"/api/v1/journeys/{run.journey_id}/steps/approveWriteOff", {"decision": "APPROVED"}, format="json")

    assert answer.status_code == 200, answer.json()
    run.refresh_from_db()
    assert run.current_state == "applyWriteOffs"


@pytest.mark.django_db
def test_member_without_approver_role_cannot_approve(tenant_a, django_capture_on_commit_callbacks):
    unbalanced_invoice(cancelled_subscription(tenant_a.tenant, at=CANCELLED))
    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(tenant_a.tenant, DAY)
        step(run, "findCandidates")

    answer = tenant_a.client.post(f"/api/v1/journeys/{run.journey_id}/steps/approveWriteOff", {"decision": "APPROVED"}, format="json")

    assert answer.status_code == 403


@pytest.mark.django_db
def test_rejected_run_applies_nothing(tenant_a, approver, django_capture_on_commit_callbacks):
    invoice = unbalanced_invoice(cancelled_subscription(tenant_a.tenant, at=CANCELLED))
    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(tenant_a.tenant, DAY)
        step(run, "findCandidates")
        engine.run_decide(run=run, step_id="approveWriteOff", decision="REJECTED", comment="", user=approver, actor=ACTOR)
        run.refresh_from_db()
        step(run, "discard")

    invoice.refresh_from_db()
    assert (run.phase, run.output["status"]) == ("SUCCEEDED", "REJECTED")
    assert invoice.balance == Decimal("119.00")
    assert WriteOffCandidate.objects.get(run=run).status == "skipped"


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((dict(self.headers), body))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/writeoff", _Hook.received
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_failures_are_reported_as_csv_emailed_and_sent_to_a_signed_webhook(tenant_a, webhook, monkeypatch, django_capture_on_commit_callbacks):
    url, received = webhook
    tenant = tenant_a.tenant
    policy(tenant, "never")
    services.writeoff_settings_save(tenant=tenant, actor=ACTOR, finance_emails="ar@acme.example, cfo@acme.example", webhook_url=url, webhook_secret="whsec")
    sub = cancelled_subscription(tenant, at=CANCELLED)
    good = unbalanced_invoice(sub)
    bad = unwritable_invoice(sub)
    mail.outbox.clear()

    notify = []
    monkeypatch.setattr(tasks.notify_failures, "delay", notify.append)
    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(tenant, DAY)
        step(run, "findCandidates")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run_to_end(run)
    for callback in callbacks:
        if "notify_failures" in callback.__code__.co_freevars:
            callback()
    report = WriteOffReport.objects.get(run=run)
    tasks.notify_failures.apply(args=[report.pk])
    tasks.notify_failures.apply(args=[report.pk])  # a second delivery notifies nobody again

    run.refresh_from_db()
    assert run.phase == "SUCCEEDED"
    assert run.output["status"] == "COMPLETED_WITH_FAILURES"
    assert run.output["counts"] == {"candidates": 2, "pending": 0, "succeeded": 1, "failed": 1, "skipped": 0}
    assert run.output["writtenOffByCurrency"] == {"EUR": "119.0000"}
    assert [f["invoiceNumber"] for f in run.output["failed"]] == [bad.number]
    assert len(notify) == 1
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ar@acme.example", "cfo@acme.example"]
    assert len(received) == 1
    headers, body = received[0]
    t, v1 = (part.split("=", 1)[1] for part in headers["Ledgerflow-Signature"].split(","))
    assert v1 == hmac.new(b"whsec", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert json.loads(body)["failedCount"] == 1

    csv_response = tenant_a.client.get(f"/api/v1/write-off-runs/{run.journey_id}/report.csv")
    assert csv_response.status_code == 200
    assert bad.number in csv_response.content.decode() and good.number not in csv_response.content.decode()
    result = tenant_a.client.get(f"/api/v1/journeys/{run.journey_id}/result").json()
    assert result["status"] == "COMPLETED_WITH_FAILURES"


@pytest.mark.django_db
def test_no_failure_means_no_notification(tenant_a, monkeypatch, django_capture_on_commit_callbacks):
    tenant = tenant_a.tenant
    policy(tenant, "never")
    services.writeoff_settings_save(tenant=tenant, actor=ACTOR, finance_emails="ar@acme.example")
    unbalanced_invoice(cancelled_subscription(tenant, at=CANCELLED))
    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(tenant, DAY)
        step(run, "findCandidates")
    notify = []
    monkeypatch.setattr(tasks.notify_failures, "delay", notify.append)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run_to_end(run)
    for callback in callbacks:
        if "notify_failures" in callback.__code__.co_freevars:
            callback()

    run.refresh_from_db()
    assert run.output["status"] == "COMPLETED" and run.output["failed"] == []
    assert WriteOffReport.objects.get(run=run).failed_count == 0
    assert notify == [] and mail.outbox == []


@pytest.mark.django_db
def test_report_of_another_tenant_is_not_found(tenant_a, tenant_b, django_capture_on_commit_callbacks):
    policy(tenant_b.tenant, "never")
    unwritable_invoice(cancelled_subscription(tenant_b.tenant, at=CANCELLED))
    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(tenant_b.tenant, DAY)
        step(run, "findCandidates")
        run_to_end(run)

    assert tenant_a.client.get(f"/api/v1/write-off-runs/{run.journey_id}/report.csv").status_code == 404
    assert tenant_b.client.get(f"/api/v1/write-off-runs/{run.journey_id}/report.csv").status_code == 200


@pytest.mark.django_db
def test_run_waits_on_its_chunks_without_a_timer_and_the_last_one_moves_it_on(
    tenant_a, django_capture_on_commit_callbacks, settings
):
    settings.WRITEOFF_CHUNK_SIZE = 1
    policy(tenant_a.tenant, "never")
    for _ in range(2):
        unbalanced_invoice(cancelled_subscription(tenant_a.tenant, at=CANCELLED))
    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(tenant_a.tenant, DAY)
        step(run, "findCandidates")
        step(run, "applyWriteOffs")
        first, second = JourneyChunk.objects.filter(run=run).order_by("index")
        engine.execute_chunk(chunk_pk=first.pk, actor=ACTOR)
        run.refresh_from_db()
        # one chunk to go: the run waits on it (no polling timer, nothing to fire)
        assert (run.current_state, run.waiting_for) == ("applyWriteOffs", "map")
        assert not JourneyTimer.objects.filter(run=run).exists()
        engine.execute_chunk(chunk_pk=second.pk, actor=ACTOR)

    run.refresh_from_db()
    assert (run.current_state, run.waiting_for) == ("report", "task")
    assert set(WriteOffCandidate.objects.filter(run=run).values_list("status", flat=True)) == {"succeeded"}


@pytest.mark.django_db
def test_daily_task_starts_one_run_per_tenant_and_day(tenant_a, tenant_b, django_capture_on_commit_callbacks):
    unbalanced_invoice(cancelled_subscription(tenant_a.tenant, at=CANCELLED))
    unbalanced_invoice(cancelled_subscription(tenant_b.tenant, at=datetime(2026, 2, 1, tzinfo=ZoneInfo("UTC"))))  # too old

    with time_machine.travel(datetime(2026, 3, 10, 5, 0, tzinfo=ZoneInfo("UTC")), tick=False):
        with django_capture_on_commit_callbacks(execute=False):
            first = tasks.start_daily_runs.apply().get()
            second = tasks.start_daily_runs.apply().get()

    assert (first, second) == (1, 1)
    assert tenant_a.tenant.journey_runs.filter(journey_name="daily-write-off", dedupe_key="2026-03-10").count() == 1
    assert not tenant_b.tenant.journey_runs.exists()


def test_task_names_are_pinned():
    assert tasks.start_daily_runs.name == "writeoffs.start_daily_runs"
    assert tasks.apply_chunk.name == "writeoffs.apply_chunk"
    assert tasks.notify_failures.name == "writeoffs.notify_failures"


@pytest.mark.django_db
def test_beat_entry_runs_daily_at_the_configured_hour_in_the_business_zone():
    from django_celery_beat.models import PeriodicTask

    from operations.setup_services import periodic_tasks_sync

    periodic_tasks_sync()

    entry = PeriodicTask.objects.get(name="writeoffs.start_daily_runs")
    assert (entry.crontab.hour, entry.crontab.minute, entry.enabled) == ("5", "0", True)
