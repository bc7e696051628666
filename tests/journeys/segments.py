"""Journeys for the segment tests: consecutive steps on one queue, each leaving a row it wrote.

Imported by the tests and by the fault tests' worker (`celery -A tests.journeys.segment_app`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from journeys.definition import Journey, Map, Succeed, Task, register


def _mark(ctx, name: str) -> None:
    """The step's effect (one customer row named after the step and run) and which task ran it."""
    from billing.models import Customer

    Customer.objects.create(tenant_id=ctx.tenant_id, name=f"{name} {ctx.journey_id}", currency="EUR")
    ctx.context.setdefault("tasks", {})[name] = ctx.actor.id
    ctx.context.setdefault("pids", {})[name] = os.getpid()


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


# --- A Map (fan-out) journey -------------------------------------------------------------------------
def work_items(ctx, items) -> dict:
    """One chunk: a customer row per item (get_or_create: a chunk run again adds nothing); an item
    the run names in `fail_items` raises as many times as `fail_times` says (counted in a row)."""
    from billing.models import Customer

    for item in items:
        if item in ctx.context.get("fail_items", []):
            marker, _ = Customer.objects.get_or_create(
                tenant_id=ctx.tenant_id, name=f"failures {item} {ctx.journey_id}", defaults={"currency": "EUR"}
            )
            failures = int(marker.email or 0)
            if failures < ctx.context.get("fail_times", 99):
                Customer.objects.filter(pk=marker.pk).update(email=str(failures + 1))
                raise RuntimeError(f"item {item} is down")
    for item in items:
        Customer.objects.get_or_create(tenant_id=ctx.tenant_id, name=f"item {item} {ctx.journey_id}", defaults={"currency": "EUR"})
    return {"items": len(items)}


mapped = register(
    Journey(
        name="kernel-map",
        start="fan",
        states=[
            Map(
                "fan",
                items=lambda ctx: ctx.context["items"],
                fn=work_items,
                chunk_size=lambda ctx: ctx.context.get("chunk", 3),
                concurrency=2,
                queue="io",
                next="done",
                routes={"failed": "someFailed"},
            ),
            Succeed("done", output=lambda c: {"status": "DONE"}),
            Succeed("someFailed", output=lambda c: {"status": "SOME_FAILED"}),
        ],
    )
)
