"""Thin tasks of the daily write-off. Each is safe to run twice."""

import requests
from celery import shared_task

from core.actors import Actor
from core.timezones import business_today
from writeoffs import services


@shared_task(name="writeoffs.start_daily_runs", bind=True)
def start_daily_runs(self) -> int:
    """Start today's (business date) write-off run for each tenant; a second call starts none."""
    runs = services.writeoff_runs_start_daily(business_date=business_today(), actor=Actor.for_task(self.name, self.request.id))
    return len(runs)


@shared_task(name="writeoffs.apply_chunk", bind=True, acks_late=True)
def apply_chunk(self, run_pk: int, candidate_ids: list[int]) -> int:
    """Write off one chunk of a run's candidates; candidates already done are left alone. The journey
    applies its chunks through its Map state now; this task serves messages enqueued before that."""
    return services.writeoff_apply_chunk(run_pk=run_pk, candidate_ids=candidate_ids, actor=Actor.for_task(self.name, self.request.id))


@shared_task(
    name="writeoffs.notify_failures",
    bind=True,
    autoretry_for=(requests.ConnectionError, requests.Timeout, requests.HTTPError, ConnectionError, TimeoutError),
    retry_backoff=True,
    max_retries=8,
)
def notify_failures(self, report_id: int) -> dict:
    """Email and webhook about a run's failures, each once."""
    return services.writeoff_notify_failures(report_id=report_id, actor=Actor.for_task(self.name, self.request.id))
