"""A leased step keeps its lease while it works, however long, and loses it when its worker dies."""

import pytest
from django.utils import timezone

from core.actors import Actor
from journeys import engine
from journeys.models import JourneyRun, JourneyStep
from tests.journeys import sample  # noqa: F401 - registers the kernel-slow journey

ACTOR = Actor.system("tests")
LEASE_SECONDS = 0.6
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def short_lease(settings):
    settings.JOURNEY_STEP_LEASE_SECONDS = LEASE_SECONDS
    settings.JOURNEY_STALL_AFTER_SECONDS = 0


def test_a_leased_step_working_longer_than_its_lease_keeps_it_and_recovery_leaves_it_alone(tenant_a, short_lease):
    run, _ = engine.run_start(
        journey_name="kernel-slow", tenant=tenant_a.tenant, actor=ACTOR, context={"work_seconds": 2.5 * LEASE_SECONDS}
    )

    result = engine.execute_step(run_pk=run.pk, state_id="slowSend", actor=ACTOR)

    run.refresh_from_db()
    assert (result.status, run.phase) == ("done", "SUCCEEDED")
    assert run.context["recovered_while_working"] == 0
    assert run.context["lease_left_at_the_end"] > 0
    assert JourneyStep.objects.filter(run=run, state="slowSend").count() == 1


def test_a_lease_nobody_renews_lapses_and_recovery_hands_the_step_on(tenant_a, short_lease):
    run, _ = engine.run_start(journey_name="kernel-slow", tenant=tenant_a.tenant, actor=ACTOR, context={"work_seconds": 0})
    # a worker claimed the step, then died: no heartbeat renews its lease
    JourneyRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timezone.timedelta(seconds=1))

    assert engine.runs_recover_stalled() == 1
