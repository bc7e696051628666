"""The batch's send steps end only when every due invoice is sent or its failure recorded."""

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone

from core.actors import Actor
from invoicing import batch
from invoicing.emails import FINAL_NOTICE, INVOICE, REMINDER
from invoicing.models import Invoice
from journeys import scheduling
from tests.factories import CustomerFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor.system("tests")
INVOICES = 12


def _issued_run(tenant, user, *, without_email: int = 0):
    """A run with INVOICES issued (unsent) invoices, the first `without_email` to customers with no email."""
    for n in range(INVOICES):
        customer = CustomerFactory(tenant=tenant, email="" if n < without_email else f"ap{n}@airline.example")
        SubscriptionFactory(customer=customer, unit_price=Decimal("100.00"), tax_rate=Decimal("0.19"),
                            started_on=date(2026, 1, 1))
    now = datetime(2026, 12, 1, 6, tzinfo=UTC)
    context = {"tenantId": tenant.slug, "batchId": "main", "firstRunAt": now.isoformat(), "interval": "P1M",
               "maxRuns": 1, "gracePeriodDuration": "P7D", "reminderGapDuration": "P7D"}
    schedule = scheduling.schedule_configure(
        journey_name="monthly-invoicing-batch", tenant=tenant, key="main", first_run_at=now, interval="P1M",
        max_runs=1, context=context, user=user, actor=ACTOR,
    )
    (run,) = scheduling.schedule_fire(schedule_id=schedule.pk, actor=ACTOR, now=now)
    batch.batch_draft(tenant=tenant, batch_id="main", run_pk=run.pk, period=batch.previous_month(date(2026, 12, 1)),
                      actor=ACTOR)
    assert batch.batch_issue(tenant=tenant, run_pk=run.pk, issue_date=date(2026, 12, 1), actor=ACTOR) == INVOICES
    return run


def _connect():
    db = settings.DATABASES["default"]
    return psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db.get("PASSWORD") or None,
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
    )


class RowLock:
    """Another session holding `FOR UPDATE` on rows (as a schedule tick holds its tenant row)."""

    def __init__(self, sql: str, params: list, *, release_after: float | None = None):
        self.sql, self.params, self.release_after = sql, params, release_after
        self.connection = _connect()
        self.timer: threading.Timer | None = None

    def __enter__(self):
        self.connection.execute(self.sql, self.params)  # psycopg opens a transaction: held until rollback
        if self.release_after is not None:
            self.timer = threading.Timer(self.release_after, self.connection.rollback)
            self.timer.start()
        return self

    def __exit__(self, *exc):
        if self.timer is not None:
            self.timer.join()
        self.connection.rollback()
        self.connection.close()


def test_send_step_sends_every_invoice_while_another_transaction_holds_the_tenant_row(tenant_a):
    run = _issued_run(tenant_a.tenant, tenant_a.user)
    mail.outbox.clear()

    with RowLock("SELECT id FROM billing_tenant WHERE id = %s FOR UPDATE", [tenant_a.tenant.pk]):
        result = batch.batch_send(run_pk=run.pk, kind=INVOICE, actor=ACTOR)

    assert (result.sent, result.failed) == (INVOICES, 0)
    assert Invoice.objects.filter(batch_run=run, sent_at__isnull=False).count() == INVOICES
    assert len(mail.outbox) == INVOICES


def test_reminders_and_final_notices_reach_every_unpaid_invoice_while_the_tenant_row_is_locked(tenant_a):
    run = _issued_run(tenant_a.tenant, tenant_a.user)
    Invoice.objects.filter(batch_run=run).update(sent_at=timezone.now() - timedelta(days=30))
    lock = "SELECT id FROM billing_customer WHERE tenant_id = %s FOR UPDATE"

    with RowLock(lock, [tenant_a.tenant.pk]):
        reminded = batch.batch_send(run_pk=run.pk, kind=REMINDER, actor=ACTOR)
    with RowLock(lock, [tenant_a.tenant.pk]):
        final = batch.batch_send(run_pk=run.pk, kind=FINAL_NOTICE, actor=ACTOR)

    assert (reminded.sent, reminded.failed) == (INVOICES, 0)
    assert (final.sent, final.failed) == (INVOICES, 0)
    assert Invoice.objects.filter(batch_run=run, final_notice_sent_at__isnull=False).count() == INVOICES


def test_send_step_waits_for_an_invoice_another_transaction_holds_instead_of_ending_early(tenant_a):
    run = _issued_run(tenant_a.tenant, tenant_a.user)
    last = Invoice.objects.filter(batch_run=run).order_by("-id").first()

    # the last invoice is held for a second by another session, then released unsent
    with RowLock("SELECT id FROM invoicing_invoice WHERE id = %s FOR UPDATE", [last.pk], release_after=1.0):
        result = batch.batch_send(run_pk=run.pk, kind=INVOICE, actor=ACTOR)

    assert (result.sent, result.failed) == (INVOICES, 0)
    last.refresh_from_db()
    assert last.sent_at is not None


def test_failed_reminder_is_recorded_with_its_reason_and_counted(tenant_a):
    run = _issued_run(tenant_a.tenant, tenant_a.user, without_email=2)
    Invoice.objects.filter(batch_run=run).update(sent_at=timezone.now() - timedelta(days=30))

    reminded = batch.batch_send(run_pk=run.pk, kind=REMINDER, actor=ACTOR)
    final = batch.batch_send(run_pk=run.pk, kind=FINAL_NOTICE, actor=ACTOR)

    assert (reminded.sent, reminded.failed) == (INVOICES - 2, 2)
    failed = Invoice.objects.filter(batch_run=run).exclude(reminder_error="")
    assert set(failed.values_list("reminder_error", flat=True)) == {"customer has no email address"}
    # a final notice goes only after a reminder: the two never reminded get none, and fail nothing
    assert (final.sent, final.failed) == (INVOICES - 2, 0)
    # and running the step again sends nothing twice
    again = batch.batch_send(run_pk=run.pk, kind=REMINDER, actor=ACTOR)
    assert (again.sent, again.failed) == (INVOICES - 2, 2)
    assert len([m for m in mail.outbox if m.subject.startswith("Reminder")]) == INVOICES - 2
