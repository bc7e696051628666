"""What bench/journeys_bench.py runs on its worker: a bare Celery hop and two trivial journeys.

Registered only in processes that import this module (the bench worker, `bench.bench_app`, and
the bench script itself), never in the application.
"""

from __future__ import annotations

import time

import redis
from celery import shared_task
from django.conf import settings

from journeys.definition import Journey, Succeed, Task, register

HOP_DONE_KEY = "bench:journeys:hop-done"


@shared_task(name="bench.hop", ignore_result=True)
def hop(remaining: int) -> None:
    """A bare Celery hop: enqueue the next one until none remain, then note the time in Redis."""
    if remaining > 1:
        hop.delay(remaining - 1)
    else:
        redis.Redis.from_url(settings.REDIS_URL).set(HOP_DONE_KEY, repr(time.time()))


def noop(ctx) -> None:
    """A step that does nothing: what remains is the kernel's own cost."""


def one_query(ctx) -> None:
    """A step whose work sends one query (a primary-key read): the step then runs under the run's lock."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM billing_tenant WHERE id = %s", [ctx.tenant_id])
        cursor.fetchone()


def _steps(name: str, count: int, fn=noop) -> Journey:
    ids = [f"step{i}" for i in range(1, count + 1)]
    states = [Task(ids[i], fn, next=ids[i + 1] if i + 1 < count else "done") for i in range(count)]
    return register(Journey(name=name, start=ids[0], states=[*states, Succeed("done")]))


TEN_STEPS = _steps("bench-ten-steps", 10)
TEN_QUERY_STEPS = _steps("bench-ten-query-steps", 10, one_query)
THREE_STEPS = _steps("bench-three-steps", 3)


HOPS_FINISHED_KEY = "bench:journeys:hops-finished"


@shared_task(name="bench.chain_hop", ignore_result=True)
def chain_hop(remaining: int) -> None:
    """One link of a bare three-hop chain: count the chain finished in Redis after its last hop."""
    if remaining > 1:
        chain_hop.delay(remaining - 1)
    else:
        redis.Redis.from_url(settings.REDIS_URL).incr(HOPS_FINISHED_KEY)
