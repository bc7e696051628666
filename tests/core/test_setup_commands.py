"""The setup commands `make run` relies on are idempotent."""

import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from billing.models import Customer
from invoicing.models import Invoice
from operations import demo, setup_services
from tenancy.models import Membership, Tenant
from tenancy.roles import Role


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
def test_seed_demo_gives_each_tenant_one_user_per_role_and_demo_tokens_prints_them(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        demo.demo_seed()
    out = StringIO()

    call_command("demo_tokens", "--json", stdout=out)

    tokens = json.loads(out.getvalue())
    assert set(tokens) == {"acme", "globex"}
    for slug, by_role in tokens.items():
        assert set(by_role) == set(Role.values)
        for role, key in by_role.items():
            membership = Membership.objects.get(user__auth_token__key=key)
            assert (membership.tenant.slug, membership.roles) == (slug, [role])
    assert Membership.objects.get(user__username="acme-approver").roles == ["finance-approver"]
    assert Membership.objects.get(user__username="globex-admin").roles == ["tenant-admin"]


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


def test_each_app_declares_its_own_beat_entries_and_sync_collects_them_all():
    by_app = {}
    for schedule in setup_services.declared_schedules():
        by_app.setdefault(schedule.task.split(".")[0], set()).add(schedule.name)

    assert by_app == {
        "journeys": {"journeys: fire due timers", "journeys: recover stalled runs"},
        "invoicing": {"invoicing.mark_overdue_invoices"},
        "reconciliation": {"reconciliation.run_daily_matching"},
        "writeoffs": {"writeoffs.start_daily_runs"},
        "consolidation": {"consolidation.start_daily_runs", "consolidation.mark_overdue"},
    }


@pytest.mark.django_db
def test_sync_keeps_the_heartbeat_entries_an_installation_already_has():
    from django_celery_beat.models import IntervalSchedule

    # As django-celery-beat wrote them from the settings' CELERY_BEAT_SCHEDULE before the move.
    every_5s = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="journeys: fire due timers", task="journeys.fire_due_timers", interval=every_5s)

    setup_services.periodic_tasks_sync()

    timers = PeriodicTask.objects.get(task="journeys.fire_due_timers")
    assert (timers.name, timers.interval.every, timers.interval.period, timers.enabled) == ("journeys: fire due timers", 5, "seconds", True)
    stalled = PeriodicTask.objects.get(task="journeys.recover_stalled_runs")
    assert (stalled.interval.every, stalled.crontab) == (30, None)


@pytest.mark.django_db(transaction=True)
def test_beat_started_on_its_own_installs_every_declared_entry():
    from config.celery_app import app
    from operations.beat import Scheduler

    assert not PeriodicTask.objects.filter(task__in=["journeys.fire_due_timers", "invoicing.mark_overdue_invoices"]).exists()

    scheduler = Scheduler(app=app)

    # The heartbeats are in beat's schedule at once; the daily entries are rows it reads as they come due.
    assert "journeys: fire due timers" in scheduler.schedule
    installed = set(PeriodicTask.objects.filter(enabled=True).values_list("name", flat=True))
    assert {s.name for s in setup_services.declared_schedules()} <= installed
