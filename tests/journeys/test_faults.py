"""Faults in the middle of a journey: a worker killed mid-step, a whole stack restarted mid-pause.

These run real processes: a `celery worker` (and `celery beat`) subprocess against the test
database and a private redis-server the test may kill, and an SMTP receiver on 127.0.0.1 that
records every message. Time cannot be moved inside a subprocess, so the worker gets a short step
lease through the environment, and timers are fired in this process under time-machine.
"""

from __future__ import annotations

import asyncio
import email
import threading
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.utils import timezone

from core.actors import Actor
from invoicing.models import Invoice
from journeys import engine, scheduling
from journeys.models import JourneyRun, JourneyStep, JourneyTimer
from tests.conftest import (
    grant_approver,
    subprocess_env,
    suite_database_url,
    terminate_other_sessions,
    wait_for,
)
from tests.factories import CustomerFactory, MembershipFactory, SubscriptionFactory, UserFactory
from tests.stack import CeleryProcesses, free_port, publishing_to

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

ACTOR = Actor.system("tests")
# The worker's lease on a leased step: long enough for the worker to be killed inside it, short
# enough that recovery can hand the step on a few seconds after the kill.
LEASE_SECONDS = 5


# --- An SMTP receiver that records every message --------------------------------------------------
class RecordingHandler:
    """Records (Message-ID, invoice number) of each message, slowly, so a kill lands mid-batch."""

    def __init__(self, delay: float):
        self.delay = delay
        self.received: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content)
        with self.lock:
            self.received.append((message["Message-ID"], message["X-Ledgerflow-Invoice"]))
        await asyncio.sleep(self.delay)
        return "250 OK"

    def snapshot(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def smtp_receiver():
    handler = RecordingHandler(delay=0.08)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


@pytest.fixture
def celery_processes(tmp_path, private_redis, smtp_receiver):
    controller, _ = smtp_receiver
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="fault-tests-secret-key-ledgerflow-0123456789abcdefghijklmnop",
        DATABASE_URL=suite_database_url(),
        REDIS_URL=private_redis.url,
        CELERY_BROKER_URL=private_redis.url,
        EMAIL_URL=f"smtp://127.0.0.1:{controller.port}",
        JOURNEY_STEP_LEASE_SECONDS=str(LEASE_SECONDS),
    )
    processes = CeleryProcesses(tmp_path, env)
    yield processes
    processes.kill_all()
    # the killed workers' sessions may linger a moment; the test database is flushed next
    terminate_other_sessions()


# --- A monthly batch waiting for approval ----------------------------------------------------------
def _books(tenant, customers: int) -> None:
    for _ in range(customers):
        customer = CustomerFactory(tenant=tenant)
        SubscriptionFactory(customer=customer, unit_price=Decimal("100.00"), tax_rate=Decimal("0.19"))


def _start_batch(tenant_context) -> JourneyRun:
    """Configure a one-off monthly batch due a minute ago and fire it: the worker drafts next."""
    tenant = tenant_context.tenant
    context = {
        "tenantId": tenant.slug,
        "batchId": "faults",
        "firstRunAt": "",
        "interval": "P1M",
        "maxRuns": 1,
        "gracePeriodDuration": "P7D",
        "reminderGapDuration": "P7D",
    }
    schedule = scheduling.schedule_configure(
        journey_name="monthly-invoicing-batch",
        tenant=tenant,
        key="faults",
        first_run_at=timezone.now() - timedelta(minutes=1),
        interval="P1M",
        max_runs=1,
        context=context,
        user=tenant_context.user,
        actor=ACTOR,
    )
    (run,) = scheduling.schedule_fire(schedule_id=schedule.pk, actor=ACTOR)
    return run


def _approve(run: JourneyRun, tenant) -> None:
    approver = grant_approver(UserFactory())
    MembershipFactory(tenant=tenant, user=approver)
    engine.run_decide(
        run=run, step_id="approveInvoiceBatch", decision="APPROVED", comment="", user=approver, actor=ACTOR
    )


def _at(run: JourneyRun, state: str, processes: CeleryProcesses, timeout: float = 30) -> None:
    try:
        wait_for(lambda: JourneyRun.objects.filter(pk=run.pk, current_state=state).exists(), timeout=timeout)
    except AssertionError:
        run.refresh_from_db()
        pytest.fail(f"run stuck at {run.current_state} ({run.phase}), expected {state}\n{processes.logs()}")


# --- The tests -------------------------------------------------------------------------------------
def test_worker_killed_in_the_middle_of_send_invoices_sends_every_invoice_once(
    tenant_a, private_redis, smtp_receiver, celery_processes, settings
):
    # given a batch of 60 drafts approved and being sent by a worker
    invoices = 60
    _, received = smtp_receiver
    settings.JOURNEY_STALL_AFTER_SECONDS = 1  # this process runs the recovery sweep
    _books(tenant_a.tenant, invoices)
    with publishing_to(private_redis.url):
        run = _start_batch(tenant_a)
        worker = celery_processes.worker()
        _at(run, "waitForFinanceApproval", celery_processes)
        _approve(run, tenant_a.tenant)
        wait_for(lambda: len(received.snapshot()) >= 15, timeout=30)

        # when the worker's whole process group is SIGKILLed mid-batch
        celery_processes.kill(worker)
        at_kill = len({message_id for message_id, _ in received.snapshot()})
        assert 0 < at_kill < invoices
        assert Invoice.objects.filter(batch_run=run, sent_at__isnull=False).count() < invoices

        # and a new worker starts; recovery hands the step on once the dead worker's lease lapsed
        celery_processes.worker()

        def recovered() -> bool:
            engine.runs_recover_stalled()
            return JourneyRun.objects.filter(pk=run.pk, current_state="waitBeforeFirstReminder").exists()

        try:
            wait_for(recovered, timeout=LEASE_SECONDS + 30, interval=0.5)
        except AssertionError:
            pytest.fail(f"the send step was not recovered\n{celery_processes.logs()}")

    # then every invoice was sent, each under one Message-ID
    sent = Invoice.objects.filter(batch_run=run)
    assert sent.count() == invoices
    assert not sent.filter(sent_at__isnull=True).exists()
    messages = received.snapshot()
    ids_per_invoice = defaultdict(set)
    for message_id, number in messages:
        ids_per_invoice[number].add(message_id)
    assert set(ids_per_invoice) == set(sent.values_list("number", flat=True))
    assert all(len(ids) == 1 for ids in ids_per_invoice.values())
    # At most the one invoice in flight at the kill was received twice: the SMTP receiver had it,
    # but the worker died before committing sent_at, so the next worker sent it again. Its
    # Message-ID is stable per invoice and kind, so the resend is the same message to the receiver
    # (a mail system deduplicating on Message-ID shows it once), not a second invoice.
    duplicates = [message_id for message_id, n in Counter(m for m, _ in messages).items() if n > 1]
    assert len(duplicates) <= 1
    run.refresh_from_db()
    assert run.context["lastRun"]["status"] == "SENT" and run.context["lastRun"]["sentCount"] == invoices
    # the step finished on its second lease: the new worker's, handed on by recovery
    assert JourneyStep.objects.get(run=run, state="sendInvoices", outcome="ok").attempt == 2


def test_run_waiting_on_a_seven_day_timer_survives_restarting_worker_beat_and_redis(
    tenant_a, private_redis, smtp_receiver, celery_processes
):
    # given a batch sent by a real worker, with beat running, waiting on its first-reminder timer
    invoices = 3
    _, received = smtp_receiver
    _books(tenant_a.tenant, invoices)
    with publishing_to(private_redis.url) as reset_publisher:
        run = _start_batch(tenant_a)
        worker, beat = celery_processes.worker(), celery_processes.beat()
        _at(run, "waitForFinanceApproval", celery_processes)
        _approve(run, tenant_a.tenant)
        _at(run, "waitBeforeFirstReminder", celery_processes)

        # when worker, beat and Redis are all SIGKILLed and come back (Redis empty)
        for process in (worker, beat):
            celery_processes.kill(process)
        private_redis.kill()
        private_redis.start()
        reset_publisher()
        celery_processes.worker()
        celery_processes.beat()

        # and seven days (and the grace after the due date) pass: the timer fires
        first = JourneyTimer.objects.get(run=run, state="waitBeforeFirstReminder")
        with time_machine.travel(first.due_at + timedelta(seconds=1)):
            assert engine.timers_fire_due(actor=ACTOR) == 1
        _at(run, "waitBeforeFinalNotice", celery_processes)
        second = JourneyTimer.objects.get(run=run, state="waitBeforeFinalNotice")
        with time_machine.travel(second.due_at + timedelta(seconds=1)):
            assert engine.timers_fire_due(actor=ACTOR) == 1
        done = wait_for(lambda: JourneyRun.objects.filter(pk=run.pk, phase="SUCCEEDED").first(), timeout=30)

    # then the restarted worker ran the steps after each timer, each once
    assert done.output["lastRun"]["status"] == "CHASE_COMPLETED"
    assert (done.output["lastRun"]["remindedCount"], done.output["lastRun"]["finalNoticeCount"]) == (
        invoices,
        invoices,
    )
    ok_steps = Counter(JourneyStep.objects.filter(run=run, outcome="ok").values_list("state", flat=True))
    assert ok_steps["sendFirstReminder"] == ok_steps["sendFinalNotice"] == ok_steps["sendInvoices"] == 1
    kinds = Counter(message_id.split(".")[0].lstrip("<") for message_id, _ in received.snapshot())
    assert kinds == {"invoice": invoices, "reminder": invoices, "final_notice": invoices}
    assert len({message_id for message_id, _ in received.snapshot()}) == 3 * invoices
