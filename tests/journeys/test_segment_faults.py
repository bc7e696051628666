"""A worker killed between two checkpoints of a segment: the run resumes after the last committed
step, by redelivery (the pool process dies, the worker puts the message back) or by recovery (the
whole worker dies, its message stays unacknowledged), and no step is done twice.

Real processes: a `celery worker` subprocess on a private redis-server, against the test database.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import pytest

from billing.models import Customer
from core.actors import Actor
from journeys import engine
from journeys.models import JourneyRun, JourneyStep
from tests.conftest import wait_for
from tests.journeys import segments  # noqa: F401 - registers the journeys this process starts
from tests.stack import publishing_to

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

ACTOR = Actor.system("tests")


def _effects(run: JourneyRun) -> Counter:
    """How many rows each step wrote for the run."""
    return Counter(
        name.split(" ")[0]
        for name in Customer.objects.filter(name__endswith=run.journey_id).values_list("name", flat=True)
    )


@pytest.mark.parametrize("kill", ["pool-process", "whole-worker"])
def test_worker_killed_between_two_checkpoints_resumes_after_the_last_committed_step(
    kill, tenant_a, tmp_path, private_redis, segment_processes, settings
):
    # given a run whose segment (first → second → third on the default queue) a worker runs, and
    # whose second step blocks after telling us which process runs it
    settings.JOURNEY_STALL_AFTER_SECONDS = 1  # this process runs the recovery sweep
    signal_file, block_file = tmp_path / "second.json", tmp_path / "block"
    block_file.write_text("")
    with publishing_to(private_redis.url):
        run, _ = engine.run_start(
            journey_name="kernel-segmented",
            tenant=tenant_a.tenant,
            actor=ACTOR,
            context={"signal": str(signal_file), "block": str(block_file)},
        )
        worker = segment_processes.worker()
        try:
            wait_for(signal_file.exists, timeout=60)
        except AssertionError:
            pytest.fail(f"the second step never ran\n{segment_processes.logs()}")
        inside = json.loads(signal_file.read_text())
        run.refresh_from_db()
        # the first step's checkpoint is committed; the second's work is not
        assert run.current_state == "second" and _effects(run) == {"first": 1}

        # when the worker dies in the middle of the second step
        if kill == "pool-process":
            os.kill(inside["pid"], signal.SIGKILL)  # the worker itself puts the message back
        else:
            segment_processes.kill(worker)  # the message stays unacknowledged (an hour, in Redis)
            segment_processes.worker()
        block_file.unlink()

        def finished() -> bool:
            if kill == "whole-worker":
                engine.runs_recover_stalled()
            return JourneyRun.objects.filter(pk=run.pk, phase="SUCCEEDED").exists()

        try:
            wait_for(finished, timeout=60, interval=0.5)
        except AssertionError:
            run.refresh_from_db()
            pytest.fail(f"run stuck at {run.current_state} ({run.phase})\n{segment_processes.logs()}")

    # then every step's work was done exactly once, the first one never again
    run.refresh_from_db()
    assert _effects(run) == {"first": 1, "second": 1, "third": 1, "elsewhere": 1}
    ok = Counter(JourneyStep.objects.filter(run=run, outcome="ok").values_list("state", flat=True))
    assert ok == {"first": 1, "second": 1, "third": 1, "elsewhere": 1}
    assert not JourneyStep.objects.filter(run=run).exclude(outcome="ok").exists()
    tasks = run.context["tasks"]
    # the first and second steps ran in one Celery task (one segment); after the kill a new
    # delivery (the same message again, or recovery's) ran second and third together
    assert inside["task"] == tasks["first"]
    assert tasks["second"] == tasks["third"]
    # the io step is another queue: a message (a task) of its own
    assert tasks["elsewhere"] != tasks["third"]
    if kill == "pool-process":
        assert tasks["second"] == tasks["first"]  # the redelivered message: same task id
    else:
        assert tasks["second"] != tasks["first"]  # recovery's new message
