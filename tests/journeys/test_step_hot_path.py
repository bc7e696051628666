"""A step's hot path: one statement for work that sends no query, the run's lock before the first
query of work that does, and the run as sent in the step's message instead of a read.

These run outside any test transaction (transaction=True), as a worker runs them: in autocommit.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import Event
from billing.models import Customer
from core.actors import Actor
from journeys import engine, runrow
from journeys.models import JourneyRun, JourneyStep
from tests.journeys import sample

ACTOR = Actor.for_task("journeys.run_step", "task-1")
pytestmark = pytest.mark.django_db(transaction=True)


def statements(queries) -> int:
    """Statements sent to PostgreSQL. Django notes BEGIN/COMMIT for an atomic block even when it
    ran no query, but psycopg sends BEGIN with a block's first query only, and no COMMIT then."""
    return len([q for q in queries if q["sql"] not in ("BEGIN", "COMMIT")])


def start_quick(tenant, **context):
    run, _ = engine.run_start(
        journey_name="kernel-quick", tenant=tenant, actor=Actor.system("tests"), context=context
    )
    return JourneyRun.objects.get(pk=run.pk)


def test_work_without_queries_is_recorded_by_one_attributed_statement(tenant_a):
    run = start_quick(tenant_a.tenant)
    seen = runrow.snapshot(run)

    with CaptureQueriesContext(connection) as queries:
        result = engine.execute_step(run_pk=run.pk, state_id="route", actor=ACTOR, seen=seen)

    assert result.status == "done"
    assert statements(queries) == 1
    run.refresh_from_db()
    assert (run.current_state, run.context["routed"]) == ("openAccount", 1)
    assert JourneyStep.objects.get(run=run, state="route").outcome == "ok"
    moved = Event.objects.get(
        object_type="journeys.journeyrun", object_id=run.pk, new_values__current_state="openAccount"
    )
    assert (moved.actor_type, moved.actor_id, moved.actor_label, moved.reason) == (
        "task",
        "task-1",
        "journeys.run_step",
        "step route",
    )


def test_a_duplicate_delivery_with_the_same_snapshot_changes_nothing(tenant_a):
    run = start_quick(tenant_a.tenant)
    seen = runrow.snapshot(run)

    first = engine.execute_step(run_pk=run.pk, state_id="route", actor=ACTOR, seen=seen)
    second = engine.execute_step(run_pk=run.pk, state_id="route", actor=ACTOR, seen=seen)

    run.refresh_from_db()
    assert (first.status, second.status) == ("done", "skipped")
    assert run.context["routed"] == 1
    assert JourneyStep.objects.filter(run=run, state="route").count() == 1


def test_a_stale_snapshot_costs_a_read_and_the_step_still_runs_once(tenant_a):
    run = start_quick(tenant_a.tenant)
    seen = runrow.snapshot(run)
    # a failed attempt after the message was sent: the run stays at the step, within the same clock tick
    JourneyRun.objects.filter(pk=run.pk).update(attempt=1)

    result = engine.execute_step(run_pk=run.pk, state_id="route", actor=ACTOR, seen=seen)

    run.refresh_from_db()
    assert result.status == "done"
    assert (run.current_state, run.context["routed"]) == ("openAccount", 1)
    assert JourneyStep.objects.get(run=run, state="route").attempt == 2


def test_work_that_queries_runs_under_the_lock_and_is_attributed(tenant_a):
    run = start_quick(tenant_a.tenant)
    engine.execute_step(run_pk=run.pk, state_id="route", actor=ACTOR, seen=runrow.snapshot(run))
    run.refresh_from_db()

    result = engine.execute_step(
        run_pk=run.pk, state_id="openAccount", actor=ACTOR, seen=runrow.snapshot(run)
    )

    run.refresh_from_db()
    assert (result.status, run.phase, run.output) == ("done", "SUCCEEDED", {"status": "DONE"})
    assert Customer.objects.filter(tenant=tenant_a.tenant, name=f"Account of {run.journey_id}").count() == 1
    ended = Event.objects.get(
        object_type="journeys.journeyrun", object_id=run.pk, new_values__phase="SUCCEEDED"
    )
    assert (ended.actor_id, ended.reason) == ("task-1", "step openAccount")


def test_work_that_queries_after_the_run_moved_on_is_rolled_back(tenant_a):
    run = start_quick(tenant_a.tenant)
    engine.execute_step(run_pk=run.pk, state_id="route", actor=ACTOR, seen=runrow.snapshot(run))
    run.refresh_from_db()
    seen = runrow.snapshot(run)
    engine.run_cancel(run=run, actor=Actor.system("tests"), reason="stop")  # after the message was sent
    sample.CALLS.clear()

    result = engine.execute_step(run_pk=run.pk, state_id="openAccount", actor=ACTOR, seen=seen)

    assert result.status == "skipped"
    assert sample.CALLS == ["open_account"]  # the work began, and its query found the run cancelled
    assert not Customer.objects.filter(tenant=tenant_a.tenant, name__startswith="Account of").exists()
    assert not JourneyStep.objects.filter(run=run, state="openAccount").exclude(outcome="cancelled").exists()


def test_a_large_context_is_not_carried_in_the_message_and_the_step_reads_the_run(tenant_a):
    run = start_quick(tenant_a.tenant, notes="x" * (runrow.SNAPSHOT_MAX_CONTEXT + 1))

    assert runrow.snapshot(run) is None
    with CaptureQueriesContext(connection) as queries:
        result = engine.execute_step(run_pk=run.pk, state_id="route", actor=ACTOR)

    assert result.status == "done"
    assert statements(queries) == 2  # the read, then the one statement that records the step


def test_the_step_statement_is_prepared_once_it_has_run_a_few_times(tenant_a):
    for _ in range(6):
        run = start_quick(tenant_a.tenant)
        engine.execute_step(run_pk=run.pk, state_id="route", actor=ACTOR, seen=runrow.snapshot(run))

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'WITH advanced AS (UPDATE%%'"
        )
        prepared = cursor.fetchall()
    assert len(prepared) == 1


def test_starting_a_run_is_one_attributed_statement_and_its_first_step_carries_the_run(tenant_a):
    with CaptureQueriesContext(connection) as queries:
        run, created = engine.run_start(
            journey_name="kernel-quick", tenant=tenant_a.tenant, actor=ACTOR, context={"a": 1}
        )

    assert created and statements(queries) == 1
    stored = JourneyRun.objects.get(pk=run.pk)
    assert (stored.current_state, stored.waiting_for, stored.context) == ("route", "task", {"a": 1})
    assert stored.updated_at == run.updated_at  # what the first step's message carries is the row
    started = Event.objects.get(object_type="journeys.journeyrun", object_id=run.pk, action="created")
    assert (started.actor_id, started.reason) == ("task-1", "journey kernel-quick started")
    assert (
        engine.execute_step(run_pk=run.pk, state_id="route", actor=ACTOR, seen=runrow.snapshot(run)).status
        == "done"
    )


def test_work_that_begins_with_a_raw_copy_still_rolls_back_when_the_run_moved_on(tenant_a):
    run, _ = engine.run_start(journey_name="kernel-copy", tenant=tenant_a.tenant, actor=Actor.system("tests"), context={})
    seen = runrow.snapshot(run)
    engine.run_cancel(run=run, actor=Actor.system("tests"), reason="stop")  # after the message was sent

    result = engine.execute_step(run_pk=run.pk, state_id="copyAccount", actor=ACTOR, seen=seen)

    assert result.status == "skipped"
    assert not Customer.objects.filter(name=f"Copied for {run.journey_id}").exists()


def test_work_that_begins_with_a_raw_copy_commits_with_the_steps_record(tenant_a):
    run, _ = engine.run_start(journey_name="kernel-copy", tenant=tenant_a.tenant, actor=Actor.system("tests"), context={})

    result = engine.execute_step(run_pk=run.pk, state_id="copyAccount", actor=ACTOR, seen=runrow.snapshot(run))

    run.refresh_from_db()
    assert (result.status, run.phase) == ("done", "SUCCEEDED")
    assert Customer.objects.filter(name=f"Copied for {run.journey_id}").count() == 1
