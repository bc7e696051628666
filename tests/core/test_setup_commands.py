"""The setup commands `make run` relies on are idempotent."""

import pytest
from django.contrib.auth import get_user_model
from django_celery_beat.models import PeriodicTask

from billing.models import Customer, Tenant
from core import demo, setup_services
from invoicing.models import Invoice


@pytest.mark.django_db
def test_seed_demo_twice_creates_nothing_new(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first = demo.demo_seed()
        counts = (Tenant.objects.count(), Customer.objects.count(), Invoice.objects.count())
        second = demo.demo_seed()

    assert first.created_anything and not second.created_anything
    assert (Tenant.objects.count(), Customer.objects.count(), Invoice.objects.count()) == counts
    assert {t.token for t in first.tokens} == {t.token for t in second.tokens}
    assert set(Invoice.objects.values_list("status", flat=True)) >= {"draft", "payment_due", "overdue", "cancelled"}


@pytest.mark.django_db
def test_sync_schedules_is_idempotent_and_uses_the_business_zone(settings):
    settings.BUSINESS_TIME_ZONE = "Europe/Berlin"

    first = setup_services.periodic_tasks_sync()
    second = setup_services.periodic_tasks_sync()

    assert first.created and not second.created and not second.updated
    task = PeriodicTask.objects.get(task="invoicing.mark_overdue_invoices")
    assert str(task.crontab.timezone) == "Europe/Berlin"


@pytest.mark.django_db
def test_ensure_admin_prefers_the_environment_password(monkeypatch):
    monkeypatch.setenv("LEDGERFLOW_ADMIN_PASSWORD", "from-the-environment-123")

    login = setup_services.admin_user_ensure()
    again = setup_services.admin_user_ensure()

    assert login.password == "from-the-environment-123" and login.created and not again.created
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("from-the-environment-123")
