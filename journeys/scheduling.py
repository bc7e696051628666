"""Journeys bound to schedules, kept as django-celery-beat entries operators can see and pause.

Beat only ticks: every SCHEDULE_TICK_SECONDS the entry runs `journeys.fire_schedule`, which starts
each due occurrence exactly once (the run's dedupe key is the schedule and the occurrence index,
unique in the database), catches up occurrences missed while beat was down one run each, and
never goes beyond max_runs.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import structlog
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from core.actors import Actor
from core.attribution import audited
from core.timezones import business_zone
from journeys import engine
from journeys.definition import get_journey
from journeys.models import JourneyRun, JourneySchedule, Phase, WaitKind
from journeys.occurrences import due_occurrences

log = structlog.get_logger(__name__)


def _tick_seconds() -> int:
    return getattr(settings, "JOURNEY_SCHEDULE_TICK_SECONDS", 10)


def _sync_periodic_task(schedule: JourneySchedule) -> None:
    every, _ = IntervalSchedule.objects.get_or_create(every=_tick_seconds(), period=IntervalSchedule.SECONDS)
    name = f"journey {schedule.journey_name} · {schedule.tenant.slug} · {schedule.key}"[:200]
    finished = schedule.next_occurrence >= schedule.max_runs
    task = schedule.periodic_task
    if task is None:
        task = PeriodicTask(name=name)
    task.name = name
    task.task = "journeys.fire_schedule"
    task.interval = every
    task.kwargs = json.dumps({"schedule_id": schedule.pk})
    task.enabled = not finished
    task.save()
    if schedule.periodic_task_id != task.pk:
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task", "updated_at"])


def schedule_configure(
    *,
    journey_name: str,
    tenant,
    key: str,
    first_run_at: datetime,
    interval: str,
    max_runs: int,
    context: dict[str, Any],
    user,
    actor: Actor,
) -> JourneySchedule:
    """Create or update (upsert on tenant + journey + key) the schedule and its configuration run.

    The configuration run ends at once, SUCCEEDED, with the journey's configuration output.
    """
    journey = get_journey(journey_name)
    with audited(actor=actor, reason=f"schedule {journey_name}/{key} configured"):
        schedule = (
            JourneySchedule.objects.select_for_update().filter(tenant=tenant, journey_name=journey_name, key=key).first()
        )
        output = journey.config_output(context) if journey.config_output else {"status": "SCHEDULED"}
        if schedule is None:
            config_run = JourneyRun.objects.create(
                journey_name=journey_name,
                tenant=tenant,
                subject_id=tenant.slug,
                phase=Phase.SUCCEEDED,
                current_state="completeConfigured",
                waiting_for=WaitKind.NONE,
                context=context,
                output=output,
                started_by=user,
            )
            schedule = JourneySchedule(tenant=tenant, journey_name=journey_name, key=key, config_run=config_run)
        else:
            config_run = schedule.config_run
            last_run = (config_run.output or {}).get("lastRun")
            config_run.context = context
            config_run.output = {**output, **({"lastRun": last_run} if last_run else {})}
            config_run.save(update_fields=["context", "output", "updated_at"])
        schedule.first_run_at = first_run_at
        schedule.interval = interval
        schedule.max_runs = max_runs
        schedule.context = context
        schedule.started_by = user
        schedule.save()
        _sync_periodic_task(schedule)
    log.info("journey.schedule_configured", journey=journey_name, tenant=tenant.pk, key=key)
    return schedule


def schedule_fire(*, schedule_id: int, actor: Actor, now: datetime | None = None) -> list[JourneyRun]:
    """Start every due occurrence not started yet, each exactly once. Returns the runs started."""
    now = now or timezone.now()
    started = []
    with audited(actor=actor, reason="schedule occurrence due"):
        schedule = JourneySchedule.objects.select_for_update().select_related("tenant", "config_run").filter(pk=schedule_id).first()
        if schedule is None:
            return []
        if schedule.periodic_task_id and not PeriodicTask.objects.filter(pk=schedule.periodic_task_id, enabled=True).exists():
            if schedule.next_occurrence < schedule.max_runs:
                return []  # paused by an operator
        journey = get_journey(schedule.journey_name)
        zone = business_zone()
        for k, at in due_occurrences(
            schedule.first_run_at, schedule.interval, start=schedule.next_occurrence, max_runs=schedule.max_runs, now=now, zone=zone
        ):
            context = {**schedule.context, "occurrence": k, "scheduledFor": at.isoformat()}
            run, created = engine.run_start(
                journey_name=schedule.journey_name,
                tenant=schedule.tenant,
                actor=actor,
                context=context,
                subject_id=schedule.tenant.slug,
                started_by=schedule.started_by,
                dedupe_key=f"schedule:{schedule.pk}:{k}",
                parent=schedule.config_run,
                schedule=schedule,
                occurrence=k,
                start_at=journey.start,
            )
            if created:
                started.append(run)
            schedule.next_occurrence = k + 1
        schedule.save(update_fields=["next_occurrence", "updated_at"])
        if schedule.next_occurrence >= schedule.max_runs and schedule.periodic_task_id:
            PeriodicTask.objects.filter(pk=schedule.periodic_task_id).update(enabled=False)
    return started
