"""Thin tasks of the journey kernel. Each is safe to run twice."""

from celery import shared_task

from core.actors import Actor
from journeys import engine, scheduling


@shared_task(name="journeys.run_step", bind=True, max_retries=None)
def run_step(self, run_pk: int, state_id: str, seen: dict | None = None) -> str:
    """Execute a segment of one run from this step (engine.execute_segment); a duplicate delivery
    does nothing, a redelivered one resumes after the last committed step. `seen`: the run as sent."""
    actor = Actor.for_task(self.name, self.request.id)
    result = engine.execute_segment(run_pk=run_pk, state_id=state_id, actor=actor, seen=seen)
    if result.status == "retry":
        # the step that failed, which need not be the message's first (the run is read afresh)
        raise self.retry(args=[run_pk, result.state_id or state_id], countdown=result.retry_in)
    return result.status


@shared_task(name="journeys.run_chunk", bind=True)
def run_chunk(self, chunk_pk: int) -> str:
    """Run one chunk of a Map state; a duplicate or early delivery does nothing (the kernel retries
    a failed chunk itself, with backoff)."""
    return engine.execute_chunk(chunk_pk=chunk_pk, actor=Actor.for_task(self.name, self.request.id)).status


@shared_task(name="journeys.fire_schedule", bind=True)
def fire_schedule(self, schedule_id: int) -> int:
    """Start the due occurrences of one schedule, each exactly once."""
    runs = scheduling.schedule_fire(schedule_id=schedule_id, actor=Actor.for_task(self.name, self.request.id))
    return len(runs)


@shared_task(name="journeys.fire_due_timers", bind=True)
def fire_due_timers(self) -> int:
    """Resume runs whose durable timers are due."""
    return engine.timers_fire_due(actor=Actor.for_task(self.name, self.request.id))


@shared_task(name="journeys.recover_stalled_runs")
def recover_stalled_runs() -> int:
    """Re-enqueue steps lost in transit or abandoned by a dead worker."""
    return engine.runs_recover_stalled()
