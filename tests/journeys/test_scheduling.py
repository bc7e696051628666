"""Schedules: each occurrence starts exactly one run, whatever beats do."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django_celery_beat.models import PeriodicTask

from core.actors import Actor
from journeys import scheduling
from journeys.models import JourneyRun, JourneySchedule

ACTOR = Actor.system("tests")
T0 = datetime(2026, 11, 1, 6, tzinfo=UTC)


def configure(tenant, user, *, interval="P1D", max_runs=10):
    return scheduling.schedule_configure(
        journey_name="kernel-sample", tenant=tenant, key="daily", first_run_at=T0, interval=interval, max_runs=max_runs,
        context={"batchId": "daily"}, user=user, actor=ACTOR,
    )


@pytest.fixture(autouse=True)
def _sample_journey():
    from tests.journeys import sample  # noqa: F401 - registers kernel-sample


@pytest.mark.django_db
def test_nothing_starts_before_the_first_occurrence(tenant_a, django_capture_on_commit_callbacks):
    schedule = configure(tenant_a.tenant, tenant_a.user)

    with django_capture_on_commit_callbacks(execute=False):
        assert scheduling.schedule_fire(schedule_id=schedule.pk, actor=ACTOR, now=T0 - timedelta(seconds=1)) == []


@pytest.mark.django_db
def test_occurrences_missed_while_beat_was_down_each_start_once(tenant_a, django_capture_on_commit_callbacks):
    schedule = configure(tenant_a.tenant, tenant_a.user)

    with django_capture_on_commit_callbacks(execute=False):
        # beat was down through three occurrences
        started = scheduling.schedule_fire(schedule_id=schedule.pk, actor=ACTOR, now=T0 + timedelta(days=2, hours=1))
        again = scheduling.schedule_fire(schedule_id=schedule.pk, actor=ACTOR, now=T0 + timedelta(days=2, hours=2))

    assert [run.occurrence for run in started] == [0, 1, 2]
    assert again == []
    assert [r.context["scheduledFor"] for r in started] == [(T0 + timedelta(days=k)).isoformat() for k in range(3)]
    assert all(r.parent_id == schedule.config_run_id and r.started_by_id == tenant_a.user.pk for r in started)


@pytest.mark.django_db
def test_never_more_than_max_runs_and_the_beat_entry_is_switched_off(tenant_a, django_capture_on_commit_callbacks):
    schedule = configure(tenant_a.tenant, tenant_a.user, max_runs=2)

    with django_capture_on_commit_callbacks(execute=False):
        started = scheduling.schedule_fire(schedule_id=schedule.pk, actor=ACTOR, now=T0 + timedelta(days=30))

    assert len(started) == 2
    assert PeriodicTask.objects.get(pk=schedule.periodic_task_id).enabled is False


@pytest.mark.django_db
def test_a_paused_beat_entry_starts_nothing(tenant_a, django_capture_on_commit_callbacks):
    schedule = configure(tenant_a.tenant, tenant_a.user)
    PeriodicTask.objects.filter(pk=schedule.periodic_task_id).update(enabled=False)

    with django_capture_on_commit_callbacks(execute=False):
        assert scheduling.schedule_fire(schedule_id=schedule.pk, actor=ACTOR, now=T0 + timedelta(days=1)) == []


@pytest.mark.django_db(transaction=True)
def test_two_beats_firing_at_once_start_one_run_per_occurrence(tenant_a):
    schedule = configure(tenant_a.tenant, tenant_a.user)
    barrier = threading.Barrier(4)

    def beat():
        try:
            barrier.wait()
            scheduling.schedule_fire(schedule_id=schedule.pk, actor=ACTOR, now=T0 + timedelta(days=1, hours=1))
        finally:
            connection.close()

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    runs = JourneyRun.objects.filter(schedule=schedule)
    assert sorted(runs.values_list("occurrence", flat=True)) == [0, 1]
    assert JourneySchedule.objects.get(pk=schedule.pk).next_occurrence == 2


@pytest.mark.django_db
def test_reconfiguring_keeps_one_schedule_and_one_beat_entry(tenant_a):
    first = configure(tenant_a.tenant, tenant_a.user)
    second = configure(tenant_a.tenant, tenant_a.user, interval="PT1M")

    assert first.pk == second.pk
    assert JourneySchedule.objects.count() == 1
    assert PeriodicTask.objects.filter(task="journeys.fire_schedule").count() == 1
    assert second.config_run.output["status"] == "SCHEDULED"
