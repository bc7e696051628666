"""Invoicing tasks, run by a real Celery worker through Redis, and safe to run twice."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core import mail

from audit.models import Event
from core.timezones import business_today
from invoicing import services, tasks
from invoicing.models import Invoice
from tests.conftest import wait_for
from tests.factories import CustomerFactory, TenantFactory


def _draft(actor):
    tenant = TenantFactory()
    customer = CustomerFactory(tenant=tenant, email="ap@customer.example")
    line = services.DraftLine(
        description="Route charges",
        quantity=Decimal(3),
        unit_amount=Decimal("33.33"),
        tax_rate=Decimal("0.19"),
    )
    return services.invoice_create_draft(tenant=tenant, actor=actor, customer=customer, lines=[line])


def test_issued_invoice_is_emailed_by_a_real_worker_through_redis(celery_worker, actor):
    # given a draft
    draft = _draft(actor)
    mail.outbox.clear()

    # when it is issued (the email task is enqueued after commit, routed to the io queue)
    issued = services.invoice_issue(invoice=draft, actor=actor)

    # then the worker sends it once and stamps sent_at, attributed to the task
    sent = wait_for(lambda: Invoice.objects.filter(pk=issued.pk, sent_at__isnull=False).first())
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ap@customer.example"]
    assert issued.number in mail.outbox[0].subject
    assert sent.sent_at is not None


@pytest.mark.django_db
def test_send_invoice_email_twice_sends_once(actor, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        issued = services.invoice_issue(invoice=_draft(actor), actor=actor)
    mail.outbox.clear()

    tasks.send_invoice_email.apply(args=[issued.pk])
    tasks.send_invoice_email.apply(args=[issued.pk])

    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_mark_overdue_twice_changes_nothing_more(actor, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        issued = services.invoice_issue(
            invoice=_draft(actor), actor=actor, issue_date=date(2026, 1, 1), due_date=date(2026, 1, 31)
        )

    first = tasks.mark_overdue_invoices.apply().get()
    events_after_first = Event.objects.count()
    second = tasks.mark_overdue_invoices.apply().get()

    issued.refresh_from_db()
    assert (first, second) == (1, 0)
    assert issued.status == "overdue"
    assert Event.objects.count() == events_after_first
    overdue_event = Event.objects.filter(object_id=issued.pk, object_type="invoicing.invoice").latest("id")
    assert (overdue_event.actor_type, overdue_event.actor_label) == (
        "task",
        "invoicing.mark_overdue_invoices",
    )


@pytest.mark.django_db
def test_invoice_not_yet_due_stays_payment_due(actor, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        issued = services.invoice_issue(
            invoice=_draft(actor),
            actor=actor,
            issue_date=business_today(),
            due_date=business_today() + timedelta(days=30),
        )

    services.invoices_mark_overdue(actor=actor)

    issued.refresh_from_db()
    assert issued.status == "payment_due"


def test_task_names_are_pinned():
    # beat stores task names as strings: renaming a task silently breaks its schedule
    assert tasks.send_invoice_email.name == "invoicing.send_invoice_email"
    assert tasks.mark_overdue_invoices.name == "invoicing.mark_overdue_invoices"


@pytest.mark.django_db
def test_invoice_of_customer_without_email_is_not_sent(actor, django_capture_on_commit_callbacks):
    draft = _draft(actor)
    draft.customer.email = ""
    draft.customer.save()
    with django_capture_on_commit_callbacks(execute=False):
        issued = services.invoice_issue(invoice=draft, actor=actor)
    mail.outbox.clear()

    tasks.send_invoice_email.apply(args=[issued.pk])

    issued.refresh_from_db()
    assert mail.outbox == [] and issued.sent_at is None
