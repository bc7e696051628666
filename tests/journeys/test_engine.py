"""The journey kernel: steps run once in effect, pauses are database states, decisions are single."""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import IntegrityError, connection
from django.utils import timezone

from audit.models import Event
from core.actors import Actor
from journeys import engine
from journeys.models import JourneyApproval, JourneyRun, JourneyStep, JourneyTimer
from tests.conftest import grant_approver, wait_for
from tests.factories import MembershipFactory, UserFactory
from tests.journeys import sample  # noqa: F401 - registers the kernel-sample journey

ACTOR = Actor.system("tests")


@pytest.fixture
def preparer(tenant_a):
    return tenant_a.user


@pytest.fixture
def approver(tenant_a):
    user = UserFactory()
    MembershipFactory(tenant=tenant_a.tenant, user=user)
    return grant_approver(user)


def start(tenant, preparer, **context):
    run, created = engine.run_start(journey_name="kernel-sample", tenant=tenant, actor=ACTOR, context=context, started_by=preparer)
    assert created
    return run


def step(run, state):
    return engine.execute_step(run_pk=run.pk, state_id=state, actor=ACTOR)


@pytest.mark.django_db
def test_step_runs_once_even_when_delivered_twice(tenant_a, preparer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = start(tenant_a.tenant, preparer)

    first, second = step(run, "prepare"), step(run, "prepare")

    run.refresh_from_db()
    assert (first.status, second.status) == ("done", "skipped")
    assert run.context["prepared"] == 1
    assert (run.current_state, run.waiting_for) == ("waitForApproval", "approval")
    assert JourneyStep.objects.filter(run=run, state="prepare").count() == 1


@pytest.mark.django_db
def test_run_state_changes_are_audited(tenant_a, preparer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = start(tenant_a.tenant, preparer)
    step(run, "prepare")

    changes = Event.objects.filter(object_type="journeys.journeyrun", object_id=run.pk, action="updated")
    assert changes.filter(old_values__current_state="prepare", new_values__current_state="waitForApproval").exists()


@pytest.mark.django_db
def test_approval_continues_to_a_durable_timer_and_the_timer_resumes_the_run(tenant_a, preparer, approver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = start(tenant_a.tenant, preparer)
        step(run, "prepare")

        engine.run_decide(run=run, step_id="approveSample", decision="APPROVED", comment="ok", user=approver, actor=ACTOR)
    run.refresh_from_db()
    timer = JourneyTimer.objects.get(run=run)
    assert (run.current_state, run.waiting_for) == ("cooldown", "timer")
    assert timer.due_at - timezone.now() > timedelta(days=6, hours=23)

    # not due yet: nothing happens
    assert engine.timers_fire_due(actor=ACTOR) == 0
    # seven days later the beat task fires it and the run moves on
    with time_machine.travel(timezone.now() + timedelta(days=7, seconds=1)), django_capture_on_commit_callbacks(execute=False):
        assert engine.timers_fire_due(actor=ACTOR) == 1
        assert engine.timers_fire_due(actor=ACTOR) == 0
    run.refresh_from_db()
    assert run.current_state == "finish"
    step(run, "finish")
    run.refresh_from_db()
    assert (run.phase, run.output) == ("SUCCEEDED", {"status": "DONE", "finished": True})


@pytest.mark.django_db
def test_second_decision_is_refused_with_409(tenant_a, preparer, approver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = start(tenant_a.tenant, preparer)
        step(run, "prepare")
        engine.run_decide(run=run, step_id="approveSample", decision="REJECTED", comment="no", user=approver, actor=ACTOR)

    with pytest.raises(engine.StepNotActive):
        engine.run_decide(run=run, step_id="approveSample", decision="APPROVED", comment="", user=approver, actor=ACTOR)
    run.refresh_from_db()
    assert (run.phase, run.output["status"]) == ("SUCCEEDED", "REJECTED")


@pytest.mark.django_db
def test_preparer_cannot_approve_their_own_run(tenant_a, preparer, django_capture_on_commit_callbacks):
    grant_approver(preparer)
    with django_capture_on_commit_callbacks(execute=False):
        run = start(tenant_a.tenant, preparer)
        step(run, "prepare")

    with pytest.raises(engine.PermissionDenied):
        engine.run_decide(run=run, step_id="approveSample", decision="APPROVED", comment="", user=preparer, actor=ACTOR)
    assert not JourneyApproval.objects.exists()


@pytest.mark.django_db
def test_database_refuses_an_approval_by_the_preparer(tenant_a, preparer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = start(tenant_a.tenant, preparer)

    with pytest.raises(IntegrityError):
        JourneyApproval.objects.create(run=run, step_id="approveSample", decision="APPROVED", decided_by=preparer, preparer=preparer)


@pytest.mark.django_db
def test_user_without_approver_role_cannot_decide(tenant_a, preparer, django_capture_on_commit_callbacks):
    clerk = UserFactory()
    MembershipFactory(tenant=tenant_a.tenant, user=clerk)
    with django_capture_on_commit_callbacks(execute=False):
        run = start(tenant_a.tenant, preparer)
        step(run, "prepare")

    with pytest.raises(engine.PermissionDenied):
        engine.run_decide(run=run, step_id="approveSample", decision="APPROVED", comment="", user=clerk, actor=ACTOR)


@pytest.mark.django_db
def test_approver_of_another_tenant_cannot_decide(tenant_a, tenant_b, preparer, django_capture_on_commit_callbacks):
    outsider = UserFactory()
    MembershipFactory(tenant=tenant_b.tenant, user=outsider)
    grant_approver(outsider)
    with django_capture_on_commit_callbacks(execute=False):
        run = start(tenant_a.tenant, preparer)
        step(run, "prepare")

    with pytest.raises(engine.PermissionDenied):
        engine.run_decide(run=run, step_id="approveSample", decision="APPROVED", comment="", user=outsider, actor=ACTOR)


@pytest.mark.django_db(transaction=True)
def test_racing_approve_and_reject_one_wins_the_other_gets_409(tenant_a, preparer, approver):
    second_approver = UserFactory()
    MembershipFactory(tenant=tenant_a.tenant, user=second_approver)
    grant_approver(second_approver)
    run = start(tenant_a.tenant, preparer)
    step(run, "prepare")
    barrier = threading.Barrier(2)
    results = {}

    def decide(user, decision):
        try:
            barrier.wait()
            engine.run_decide(run=run, step_id="approveSample", decision=decision, comment="", user=user, actor=ACTOR)
            results[decision] = "won"
        except engine.StepNotActive:
            results[decision] = "409"
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=a) for a in ((approver, "APPROVED"), (second_approver, "REJECTED"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(results.values()) == ["409", "won"]
    assert JourneyApproval.objects.filter(run=run).count() == 1


@pytest.mark.django_db
def test_cancel_drops_pending_timers_and_is_idempotent(tenant_a, preparer, approver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = start(tenant_a.tenant, preparer)
        step(run, "prepare")
        engine.run_decide(run=run, step_id="approveSample", decision="APPROVED", comment="", user=approver, actor=ACTOR)

    engine.run_cancel(run=run, actor=ACTOR, reason="stop")
    again = engine.run_cancel(run=run, actor=ACTOR, reason="stop again")

    assert (again.phase, again.error["code"]) == ("FAILED", "JOURNEY_CANCELLED")
    assert JourneyTimer.objects.get(run=run).cancelled_at is not None
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert engine.timers_fire_due(actor=ACTOR) == 0


@pytest.mark.django_db
def test_failing_step_is_retried_then_fails_the_run(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = engine.run_start(journey_name="kernel-failing", tenant=tenant_a.tenant, actor=ACTOR, context={})
        results = [engine.execute_step(run_pk=run.pk, state_id="flaky", actor=ACTOR).status for _ in range(engine.MAX_ATTEMPTS)]

    run.refresh_from_db()
    assert results == ["retry"] * (engine.MAX_ATTEMPTS - 1) + ["failed"]
    assert (run.phase, run.error["code"]) == ("FAILED", "STEP_FAILED")
    assert JourneyStep.objects.filter(run=run, outcome="error").count() == engine.MAX_ATTEMPTS


@pytest.mark.django_db
def test_dedupe_key_starts_a_run_once(tenant_a):
    first, created_first = engine.run_start(journey_name="kernel-sample", tenant=tenant_a.tenant, actor=ACTOR, context={}, dedupe_key="2026-11-24")
    second, created_second = engine.run_start(journey_name="kernel-sample", tenant=tenant_a.tenant, actor=ACTOR, context={}, dedupe_key="2026-11-24")

    assert (created_first, created_second) == (True, False)
    assert first.pk == second.pk


@pytest.mark.django_db
def test_recovery_reenqueues_a_step_whose_message_was_lost(tenant_a, preparer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):  # the message is "lost": never sent
        start(tenant_a.tenant, preparer)

    assert engine.runs_recover_stalled() == 0  # too early to call it lost
    with time_machine.travel(timezone.now() + timedelta(minutes=2)), django_capture_on_commit_callbacks(execute=False) as sent:
        assert engine.runs_recover_stalled() == 1
        assert engine.runs_recover_stalled() == 0  # just re-dispatched
    assert len(sent) == 1


def test_a_real_worker_runs_the_journey_through_redis(celery_worker, tenant_a, approver):
    run = start(tenant_a.tenant, tenant_a.user)

    wait_for(lambda: JourneyRun.objects.filter(pk=run.pk, current_state="waitForApproval").exists())
    engine.run_decide(run=run, step_id="approveSample", decision="REJECTED", comment="not this month", user=approver, actor=ACTOR)

    done = wait_for(lambda: JourneyRun.objects.filter(pk=run.pk, phase="SUCCEEDED").first())
    assert done.output == {"status": "REJECTED"}
    assert done.context["approval"]["comment"] == "not this month"


def test_journey_ids_are_22_base64url_characters_never_starting_with_a_dash():
    import re

    from journeys.models import new_journey_id

    ids = {new_journey_id() for _ in range(5000)}

    assert len(ids) == 5000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)
