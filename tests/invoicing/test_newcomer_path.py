"""The newcomer's path: the shipped demo data, beat and a real worker running, the README's commands.

What a new user does after `make run`: the demo data is there (`seed_demo`), beat and a worker run
(here as subprocesses with a private Redis, an SMTP sink on a port of their own and a clean
environment), the monthly batch is configured with the README's POST, its run pauses for approval,
an approver (not the user who started it) approves, and every drafted invoice is emailed exactly
once. The next occurrence bills the same period again and finds nothing new: it ends
NOTHING_TO_BILL without asking anyone to approve an empty batch.
"""

from __future__ import annotations

import email
import threading
from collections import Counter
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from invoicing.models import Invoice
from journeys.models import JourneyApproval, JourneyRun
from operations.demo import demo_tokens
from tests.conftest import (
    subprocess_env,
    suite_database_url,
    terminate_other_sessions,
    wait_for,
)
from tests.factories import TokenFactory
from tests.stack import CeleryProcesses, PrivateRedis, free_port, publishing_to

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

START = "/api/v1/journeys/monthly-invoicing-batch/start"
# Two occurrences this far apart both bill the previous calendar month: the second one is "the same
# period again", soon enough for a test.
INTERVAL_SECONDS = 20


class Sink:
    """An SMTP receiver counting each message by (kind, invoice number)."""

    def __init__(self):
        self.received: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content)
        with self.lock:
            self.received.append((message["Message-ID"], message["X-Ledgerflow-Invoice"]))
        return "250 OK"

    def snapshot(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def stack(tmp_path, settings):
    """Private Redis, SMTP sink, and worker + beat subprocesses on the test database."""
    settings.JOURNEY_SCHEDULE_TICK_SECONDS = 1  # the beat entry this process writes ticks every second
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="newcomer-test-secret-key-ledgerflow-0123456789abcdefghijklmnop",
        DATABASE_URL=suite_database_url(),
        REDIS_URL=redis_server.url,
        CELERY_BROKER_URL=redis_server.url,
        EMAIL_URL=f"smtp://127.0.0.1:{controller.port}",
        JOURNEY_SCHEDULE_TICK_SECONDS="1",
    )
    processes = CeleryProcesses(tmp_path, env)
    try:
        with publishing_to(redis_server.url):
            yield processes, sink
    finally:
        processes.kill_all()
        controller.stop()
        redis_server.kill()
        terminate_other_sessions()


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def _run(processes, predicate, what: str, timeout: float = 40):
    try:
        return wait_for(predicate, timeout=timeout, interval=0.2)
    except AssertionError:
        pytest.fail(f"{what} did not happen within {timeout}s\n{processes.logs()}")


def test_demo_batch_is_approved_and_emailed_once_each_and_the_next_occurrence_has_nothing_to_bill(stack):
    processes, sink = stack
    # given the shipped demo data, with its operator's and approver's tokens, and beat and a worker running
    call_command("seed_demo")
    tokens = demo_tokens()["acme"]
    operator, approver_token = tokens["finance-operator"], tokens["finance-approver"]
    demo_issued = Invoice.objects.exclude(status__in=["draft", "cancelled"]).count()
    processes.worker()
    processes.beat()

    # when the batch is configured as the README shows (due now, the next occurrence shortly after)
    first_run_at = timezone.now() - timedelta(seconds=1)
    body = {
        "tenantId": "acme", "batchId": "main", "firstRunAt": first_run_at.isoformat(),
        "interval": f"PT{INTERVAL_SECONDS}S", "maxRuns": 2, "gracePeriodDuration": "P7D", "reminderGapDuration": "P7D",
    }
    configured = _client(operator).post(START, body, format="json")
    assert configured.status_code == 200, configured.json()

    # then beat starts the first occurrence and the worker drafts it up to the approval pause
    run = _run(
        processes,
        lambda: JourneyRun.objects.filter(occurrence=0, current_state="waitForFinanceApproval").first(),
        "the first run pausing for approval",
    )
    drafted = Invoice.objects.filter(batch_run=run)
    rows = drafted.count()
    assert rows > 0
    status = _client(operator).get(f"/api/v1/journeys/{run.journey_id}").json()
    assert status["approvalSummary"]["invoiceCount"] == rows

    # when the demo's approver, who did not start the run, approves it (its operator may not)
    step = f"/api/v1/journeys/{run.journey_id}/steps/approveInvoiceBatch"
    refused = _client(operator).post(step, {"decision": "APPROVED"}, format="json")
    assert (refused.status_code, refused.json()["permission"]) == (403, "journeys.decide")
    decided = _client(approver_token).post(step, {"decision": "APPROVED"}, format="json")
    assert decided.status_code == 200, decided.json()
    assert run.started_by_id != TokenFactory._meta.model.objects.get(key=approver_token).user_id

    # then every drafted invoice is emailed exactly once and the run's counts are the rows'
    _run(processes, lambda: JourneyRun.objects.filter(pk=run.pk, current_state="waitBeforeFirstReminder").exists(),
         "sending the approved batch")
    numbers = set(drafted.values_list("number", flat=True))
    _run(processes, lambda: len(sink.snapshot()) >= demo_issued + rows, "every email reaching the SMTP sink", 20)
    per_invoice = Counter(number for _, number in sink.snapshot() if number in numbers)
    assert per_invoice == dict.fromkeys(numbers, 1)
    run.refresh_from_db()
    last_run = run.context["lastRun"]
    assert (last_run["status"], last_run["sentCount"], last_run["failedCount"]) == ("SENT", rows, 0)
    assert drafted.filter(sent_at__isnull=False).count() == rows
    assert drafted.exclude(send_error="").count() == 0

    # and the next occurrence, billing the same period, finds nothing new and asks nobody
    second = _run(
        processes,
        lambda: JourneyRun.objects.filter(occurrence=1, phase="SUCCEEDED").first(),
        "the second occurrence ending",
        timeout=INTERVAL_SECONDS + 30,
    )
    assert second.output["status"] == "NOTHING_TO_BILL"
    assert second.context["billingPeriod"] == run.context["billingPeriod"]
    assert not JourneyApproval.objects.filter(run=second).exists()
    assert not Invoice.objects.filter(batch_run=second).exists()
    result = _client(operator).get(f"/api/v1/journeys/{run.parent.journey_id}/result").json()
    assert result["output"]["lastRun"]["status"] == "NOTHING_TO_BILL"
    # nothing more was emailed: the demo's own invoices and the batch's, each once
    assert len(sink.snapshot()) == demo_issued + rows
