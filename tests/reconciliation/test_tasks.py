"""Matching tasks through a real Celery worker and Redis; safe to run twice; names pinned."""

import io

import pytest

from core.actors import Actor
from invoicing.models import Invoice
from operations.setup_services import declared_schedules
from reconciliation import services, tasks
from reconciliation.models import Reconciliation
from tests.conftest import wait_for
from tests.reconciliation.camt import camt053


def test_task_names_are_pinned_and_daily_run_is_scheduled():
    assert tasks.run_matching.name == "reconciliation.run_matching"
    assert tasks.run_daily_matching.name == "reconciliation.run_daily_matching"
    assert "reconciliation.run_daily_matching" in {s.task for s in declared_schedules()}


def test_import_then_completed_payment_reconcile_through_the_worker(celery_worker, books):
    # given an invoice and its payment in processing
    invoice = books.invoice("129.00")
    payment = books.payment("129.00", invoice=invoice, rail="pi_w", status="processing")

    # when the statement is imported (matching is enqueued after commit); the bank statement
    # outranks the rail, so a processing payment with a booked bank credit is enough
    services.statement_import(
        tenant=books.tenant,
        actor=Actor.system("tests"),
        bank_account=books.account,
        stream=io.BytesIO(camt053([{"amount": "129.00", "ref": "pi_w", "txid": "W1"}])),
    )

    # then the worker reconciles it and the invoice is paid
    paid = wait_for(lambda: Invoice.objects.filter(pk=invoice.pk, status="paid").first())
    assert paid.amount_paid == invoice.total
    assert Reconciliation.objects.get(invoice=invoice).payment_id == payment.pk


@pytest.mark.django_db
def test_run_matching_twice_changes_nothing(books):
    invoice = books.invoice("10.00")
    books.payment("10.00", invoice=invoice, rail="pi_t2")
    books.import_camt([{"amount": "10.00", "ref": "pi_t2", "txid": "T2"}])

    first = tasks.run_matching.apply(args=[books.tenant.pk]).get()
    second = tasks.run_matching.apply(args=[books.tenant.pk]).get()

    assert (first, second) == (1, 0)


@pytest.mark.django_db
def test_daily_run_fans_out_per_tenant_with_work(books, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.run_matching, "delay", lambda tenant_id: sent.append(tenant_id))
    books.import_camt([{"amount": "10.00", "txid": "D"}])

    assert tasks.run_daily_matching.apply().get() == 1
    assert sent == [books.tenant.pk]
