"""With real Celery workers, Redis and PostgreSQL: a whole run, and a worker killed mid-run."""

import os
import signal
import subprocess
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from invoicing.models import Invoice, InvoiceAdjustment
from journeys import engine
from journeys.models import ApprovalPolicy, JourneyRun
from tests.conftest import subprocess_env, terminate_other_sessions, wait_for
from tests.writeoffs.helpers import ACTOR, cancelled_subscription, start_run, unbalanced_invoice
from writeoffs.models import WriteOffCandidate

DAY = date(2026, 3, 10)
CANCELLED = datetime(2026, 3, 8, 9, tzinfo=ZoneInfo("UTC"))
ROOT = Path(__file__).resolve().parents[2]


def setup_invoices(tenant, count: int) -> list[int]:
    ApprovalPolicy.objects.create(tenant=tenant, journey_name="daily-write-off", mode="never")
    sub = cancelled_subscription(tenant, at=CANCELLED, source="AUTOCANCEL")
    return [unbalanced_invoice(sub).pk for _ in range(count)]


def finish(run: JourneyRun, *, timeout: float) -> JourneyRun:
    """Play beat: fire due timers (as if time passed) and recover what is stalled until the run ends."""

    def ended():
        engine.timers_fire_due(actor=ACTOR, now=timezone.now() + timedelta(minutes=1))
        engine.runs_recover_stalled()
        run.refresh_from_db()
        return run.phase != "RUNNING"

    wait_for(ended, timeout=timeout, interval=0.3)
    return run


def assert_each_written_off_once(invoice_ids):
    invoices = Invoice.objects.filter(pk__in=invoice_ids)
    assert set(invoices.values_list("status", "balance", "amount_credited")) == {("written_off", Decimal("0"), Decimal("119"))}
    per_invoice = InvoiceAdjustment.objects.filter(invoice__in=invoice_ids).values("invoice").annotate(n=Count("id"))
    assert {row["n"] for row in per_invoice} == {2} and len(per_invoice) == len(invoice_ids)


@pytest.mark.django_db(transaction=True)
def test_whole_run_on_a_real_worker(tenant_a, celery_worker):
    invoice_ids = setup_invoices(tenant_a.tenant, 12)

    run = finish(start_run(tenant_a.tenant, DAY), timeout=60)

    assert (run.phase, run.output["status"]) == ("SUCCEEDED", "COMPLETED")
    assert run.output["counts"]["succeeded"] == 12
    assert run.output["writtenOffByCurrency"] == {"EUR": "1428.0000"}
    assert_each_written_off_once(invoice_ids)


def start_worker(db_name: str) -> subprocess.Popen:
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db_name}",
        # settings_test takes its Redis from this test-only variable alone
        LEDGERFLOW_TEST_REDIS_URL=settings.CELERY_BROKER_URL,
        WRITEOFF_CHUNK_SIZE="2",
        # a chunk's lease: a killed worker's chunks are handed on by recovery this long after
        JOURNEY_STEP_LEASE_SECONDS="5",
    )
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork", "-c", "2", "-Q", "default,io",
               "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"]
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(worker: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(worker.pid, sig)
    except ProcessLookupError:
        pass
    worker.wait(timeout=30)


@pytest.mark.django_db(transaction=True)
def test_worker_killed_during_apply_leaves_every_invoice_at_zero_exactly_once(tenant_a, settings):
    # this process plays beat's recovery: a chunk message the dead worker held is lost after this
    settings.JOURNEY_STALL_AFTER_SECONDS = 3
    from config.celery_app import app

    app.control.purge()
    invoice_ids = setup_invoices(tenant_a.tenant, 300)
    db_name = settings.DATABASES["default"]["NAME"]
    first = start_worker(db_name)
    second = None
    try:
        run = start_run(tenant_a.tenant, DAY)
        candidates = WriteOffCandidate.objects.filter(invoice_id__in=invoice_ids)
        wait_for(lambda: candidates.filter(status="succeeded").count() >= 10, timeout=60, interval=0.01)

        # when: the worker and its children die without a chance to clean up
        kill(first)
        pending_at_kill = candidates.filter(status="pending").count()
        second = start_worker(db_name)
        finish(run, timeout=120)

        # then
        assert pending_at_kill > 0, "the kill came too late to test anything"
        assert run.output["counts"]["succeeded"] == 300
        assert_each_written_off_once(invoice_ids)
    finally:
        kill(first)
        if second is not None:
            kill(second, signal.SIGTERM)
        app.control.purge()
        terminate_other_sessions()
