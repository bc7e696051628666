"""The Map (fan-out) state: chunks the kernel owns, a concurrency limit, retries with backoff, and a
fan-in that moves the run on once every chunk has an outcome (no polling timer)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Customer
from core.actors import Actor
from journeys import engine
from journeys.models import JourneyChunk, JourneyRun, JourneyStep
from tests.conftest import wait_for
from tests.journeys import segments  # noqa: F401 - registers kernel-map

ACTOR = Actor.system("tests")


def _start(tenant, **context) -> JourneyRun:
    run, _ = engine.run_start(journey_name="kernel-map", tenant=tenant, actor=ACTOR, context=context)
    engine.execute_step(run_pk=run.pk, state_id="fan", actor=ACTOR)  # the split
    run.refresh_from_db()
    return run


def _items_done(run) -> set[int]:
    names = Customer.objects.filter(name__startswith="item ", name__endswith=run.journey_id).values_list("name", flat=True)
    return {int(name.split(" ")[1]) for name in names}


def _run_due_chunks(run, *, now=None) -> None:
    """What the workers would do: run every dispatched, pending chunk whose time has come."""
    for chunk in JourneyChunk.objects.filter(run=run, status="pending", dispatched_at__isnull=False).order_by("index"):
        engine.execute_chunk(chunk_pk=chunk.pk, actor=ACTOR)


@pytest.mark.django_db
def test_split_makes_chunk_rows_and_dispatches_only_up_to_the_concurrency_limit(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(tenant_a.tenant, items=list(range(10)))

    chunks = list(JourneyChunk.objects.filter(run=run).order_by("index"))
    assert [c.items for c in chunks] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert [c.dispatched_at is not None for c in chunks] == [True, True, False, False]
    assert (run.current_state, run.waiting_for) == ("fan", "map"), (run.phase, run.current_state, run.error)


@pytest.mark.django_db
def test_each_outcome_hands_its_slot_on_and_the_last_moves_the_run_on(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(tenant_a.tenant, items=list(range(10)))
        _run_due_chunks(run)  # chunks 0 and 1: each outcome dispatches a waiting one (2, 3)
        run.refresh_from_db()
        assert run.waiting_for == "map"  # chunks left: no move yet, no timer either
        assert JourneyChunk.objects.filter(run=run, dispatched_at__isnull=True).count() == 0
        _run_due_chunks(run)

    run.refresh_from_db()
    assert (run.phase, run.current_state) == ("SUCCEEDED", "done")
    assert _items_done(run) == set(range(10))
    assert run.context["maps"]["fan"] == {
        "items": 10,
        "chunks": 4,
        "succeeded": 4,
        "failed": 0,
        "results": [{"items": 3}, {"items": 3}, {"items": 3}, {"items": 1}],
    }
    assert list(JourneyStep.objects.filter(run=run).values_list("state", "outcome")) == [("fan", "ok")]


@pytest.mark.django_db
def test_a_duplicate_or_early_chunk_message_does_nothing(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(tenant_a.tenant, items=[1, 2], chunk=2, fail_items=[2], fail_times=1)
        chunk = JourneyChunk.objects.get(run=run)
        assert engine.execute_chunk(chunk_pk=chunk.pk, actor=ACTOR).status == "retry"
        # the retry is due in a few seconds: a message now changes nothing
        assert engine.execute_chunk(chunk_pk=chunk.pk, actor=ACTOR).status == "skipped"
        chunk.refresh_from_db()
        assert (chunk.status, chunk.attempt) == ("pending", 1)
        JourneyChunk.objects.filter(pk=chunk.pk).update(due_at=timezone.now() - timedelta(seconds=1))
        assert engine.execute_chunk(chunk_pk=chunk.pk, actor=ACTOR).status == "done"
        assert engine.execute_chunk(chunk_pk=chunk.pk, actor=ACTOR).status == "skipped"

    run.refresh_from_db()
    assert run.output == {"status": "DONE"} and _items_done(run) == {1, 2}


@pytest.mark.django_db
def test_a_chunk_failing_every_attempt_fails_and_the_run_takes_the_failed_route(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(tenant_a.tenant, items=[1, 2, 3, 4], chunk=2, fail_items=[4])
        failing = JourneyChunk.objects.get(run=run, index=1)
        engine.execute_chunk(chunk_pk=JourneyChunk.objects.get(run=run, index=0).pk, actor=ACTOR)
        delays = []
        for _ in range(engine.MAX_ATTEMPTS):
            JourneyChunk.objects.filter(pk=failing.pk).update(due_at=None)
            result = engine.execute_chunk(chunk_pk=failing.pk, actor=ACTOR)
            delays.append(result.retry_in)

    failing.refresh_from_db()
    assert (failing.status, failing.attempt) == ("failed", 3) and "item 4 is down" in failing.error
    assert delays == [2, 10, None]  # backoff, then no more attempts
    run.refresh_from_db()
    assert run.output == {"status": "SOME_FAILED"}
    assert run.context["maps"]["fan"]["failed"] == 1 and _items_done(run) == {1, 2}


@pytest.mark.django_db
def test_recovery_hands_on_a_chunk_whose_worker_died(tenant_a, django_capture_on_commit_callbacks, settings):
    settings.JOURNEY_STALL_AFTER_SECONDS = 60
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(tenant_a.tenant, items=[1])
    chunk = JourneyChunk.objects.get(run=run)
    # a worker claimed it and died: its lease lapses
    JourneyChunk.objects.filter(pk=chunk.pk).update(status="running", attempt=1, lease_until=timezone.now() - timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert engine.chunks_recover() == 1
        assert engine.chunks_recover() == 0  # handed on once
    assert len(sent) == 1
    chunk.refresh_from_db()
    assert (chunk.status, chunk.lease_until) == ("pending", None)
    with django_capture_on_commit_callbacks(execute=False):
        assert engine.execute_chunk(chunk_pk=chunk.pk, actor=ACTOR).status == "done"
    run.refresh_from_db()
    assert run.output == {"status": "DONE"}


def test_a_real_worker_runs_every_chunk_to_the_end(tenant_a, celery_worker):
    run, _ = engine.run_start(journey_name="kernel-map", tenant=tenant_a.tenant, actor=ACTOR, context={"items": list(range(25))})

    done = wait_for(lambda: JourneyRun.objects.filter(pk=run.pk, phase="SUCCEEDED").first(), timeout=60)

    assert done.output == {"status": "DONE"}
    assert _items_done(done) == set(range(25))
    assert set(JourneyChunk.objects.filter(run=run).values_list("status", "attempt")) == {("succeeded", 1)}
