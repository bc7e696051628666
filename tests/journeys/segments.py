"""Journeys for the segment tests: consecutive steps on one queue, each leaving a row it wrote.

Imported by the tests and by the fault tests' worker (`celery -A tests.journeys.segment_app`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from journeys.definition import Journey, Succeed, Task, register


def _mark(ctx, name: str) -> None:
    """The step's effect (one customer row named after the step and run) and which task ran it."""
    from billing.models import Customer

    Customer.objects.create(tenant_id=ctx.tenant_id, name=f"{name} {ctx.journey_id}", currency="EUR")
    ctx.context.setdefault("tasks", {})[name] = ctx.actor.id


def first(ctx) -> None:
    _mark(ctx, "first")


def second(ctx) -> None:
    """Writes, then (when the run asks) tells the test which process runs it and waits while the
    block file exists: the test kills the worker here, between the first and second checkpoints."""
    _mark(ctx, "second")
    signal, block = ctx.context.get("signal"), ctx.context.get("block")
    if signal:
        Path(signal).write_text(json.dumps({"pid": os.getpid(), "task": ctx.actor.id}))
        while block and Path(block).exists():
            time.sleep(0.05)


def third(ctx) -> None:
    _mark(ctx, "third")


def elsewhere(ctx) -> None:
    _mark(ctx, "elsewhere")


def route(ctx) -> None:
    """No query: only the context."""
    ctx.context["hops"] = ctx.context.get("hops", 0) + 1
    ctx.context.setdefault("routeTasks", []).append(ctx.actor.id)


segmented = register(
    Journey(
        name="kernel-segmented",
        start="first",
        states=[
            Task("first", first, next="second"),
            Task("second", second, next="third"),
            Task("third", third, next="elsewhere"),
            Task("elsewhere", elsewhere, queue="io", next="done"),
            Succeed("done", output=lambda c: {"status": "DONE"}),
        ],
    )
)

ROUTE_STEPS = 12
routing = register(
    Journey(
        name="kernel-routing",
        start="route1",
        states=[
            *(
                Task(f"route{i}", route, next=f"route{i + 1}" if i < ROUTE_STEPS else "done")
                for i in range(1, ROUTE_STEPS + 1)
            ),
            Succeed("done"),
        ],
    )
)
