"""Scale-out: two worker processes (as two machines would run) on the same queues, many runs and
Map chunks in flight at once; no step or chunk ran twice in effect and none was lost.

Real processes: two `celery worker` subprocesses on a private redis-server, against the test database.
"""

from __future__ import annotations

from collections import Counter

import pytest

from billing.models import Customer
from core.actors import Actor
from journeys import engine
from journeys.models import JourneyChunk, JourneyRun, JourneyStep
from tests.conftest import wait_for
from tests.journeys import segments  # noqa: F401 - registers the journeys this process starts
from tests.stack import publishing_to

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

ACTOR = Actor.system("tests")
RUNS = 120
MAP_RUNS, ITEMS = 20, 12
STEPS = ("first", "second", "third", "elsewhere")


# short segments, so the runs hop between the two workers often
@pytest.mark.segment_worker_variables(JOURNEY_SEGMENT_STEPS="2")
def test_two_workers_run_many_runs_each_step_once_and_lose_none(tenant_a, private_redis, segment_processes):
    # given two workers on the same queues
    with publishing_to(private_redis.url):
        segment_processes.worker()
        segment_processes.worker()
        # when many runs start at once
        runs = [
            engine.run_start(journey_name="kernel-segmented", tenant=tenant_a.tenant, actor=ACTOR, context={"i": i})[0]
            for i in range(RUNS)
        ]
        mapped = [
            engine.run_start(
                journey_name="kernel-map", tenant=tenant_a.tenant, actor=ACTOR, context={"items": list(range(ITEMS)), "chunk": 2}
            )[0]
            for _ in range(MAP_RUNS)
        ]
        pks = [run.pk for run in runs]
        all_pks = pks + [run.pk for run in mapped]
        try:
            wait_for(
                lambda: JourneyRun.objects.filter(pk__in=all_pks, phase="SUCCEEDED").count() == len(all_pks),
                timeout=240,
                interval=0.5,
            )
        except AssertionError:
            stuck = Counter(JourneyRun.objects.filter(pk__in=all_pks).values_list("phase", "current_state"))
            pytest.fail(f"not every run finished: {stuck}\n{segment_processes.logs()}")

    # then each run's every step did its work once and was recorded once
    names = Customer.objects.filter(tenant=tenant_a.tenant).values_list("name", flat=True)
    effects = Counter(name.rsplit(" ", 1)[0] for name in names if not name.startswith("item "))
    assert effects == dict.fromkeys(STEPS, RUNS)
    # every Map run's every item done once, each chunk claimed once, none left without an outcome
    items = Counter(name.rsplit(" ", 1)[1] for name in names if name.startswith("item "))
    assert len(items) == MAP_RUNS and set(items.values()) == {ITEMS}
    chunks = JourneyChunk.objects.filter(run__in=mapped)
    assert chunks.count() == MAP_RUNS * ITEMS // 2
    assert set(chunks.values_list("status", "attempt")) == {("succeeded", 1)}
    per_run = Counter(
        JourneyStep.objects.filter(run_id__in=pks, outcome="ok").values_list("run_id", "state")
    )
    assert set(per_run.values()) == {1} and len(per_run) == RUNS * len(STEPS)
    assert not JourneyStep.objects.filter(run_id__in=pks).exclude(outcome="ok").exists()
    # and both workers took part
    pids = {pid for run in JourneyRun.objects.filter(pk__in=pks) for pid in run.context["pids"].values()}
    assert len(pids) >= 2
    assert all(r.output == {"status": "DONE"} for r in JourneyRun.objects.filter(pk__in=[r.pk for r in mapped]))
