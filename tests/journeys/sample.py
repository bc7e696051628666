"""A small journey used to test the kernel on its own: work → approval → timer → work → end."""

from datetime import timedelta

from journeys.definition import Approval, Journey, Succeed, Task, Timer, after, register

CALLS: list[str] = []


def prepare(ctx):
    CALLS.append(f"prepare:{ctx.journey_id}")
    ctx.context["prepared"] = ctx.context.get("prepared", 0) + 1
    return "ok" if not ctx.context.get("fail_validation") else "invalid"


def flaky(ctx):
    CALLS.append("flaky")
    raise RuntimeError("downstream is down")


def finish(ctx):
    CALLS.append("finish")
    ctx.context["finished"] = True


sample = register(
    Journey(
        name="kernel-sample",
        start="prepare",
        states=[
            Task("prepare", prepare, routes={"ok": "waitForApproval", "invalid": "rejected"}),
            Approval("waitForApproval", step_id="approveSample", routes={"APPROVED": "cooldown", "REJECTED": "rejected"},
                     summary=lambda c: {"prepared": c.get("prepared")}),
            Timer("cooldown", due_at=after(timedelta(days=7)), next="finish"),
            Task("finish", finish, transactional=False, next="done"),
            Succeed("done", output=lambda c: {"status": "DONE", "finished": c.get("finished", False)}),
            Succeed("rejected", output=lambda c: {"status": "REJECTED"}),
        ],
    )
)

failing = register(
    Journey(
        name="kernel-failing",
        start="flaky",
        states=[Task("flaky", flaky, next="done"), Succeed("done")],
    )
)


def route(ctx):
    """Work that sends no query: it only reads and writes the run's context."""
    CALLS.append("route")
    ctx.context["routed"] = ctx.context.get("routed", 0) + 1


def open_account(ctx):
    """Work that writes to the database: opens one customer account for the run."""
    from billing.models import Customer

    CALLS.append("open_account")
    Customer.objects.create(tenant_id=ctx.tenant_id, name=f"Account of {ctx.journey_id}", currency="EUR")


quick = register(
    Journey(
        name="kernel-quick",
        start="route",
        states=[
            Task("route", route, next="openAccount"),
            Task("openAccount", open_account, next="done"),
            Succeed("done", output=lambda c: {"status": "DONE"}),
        ],
    )
)


def route(ctx):
    """Work that sends no query: it only reads and writes the run's context."""
    CALLS.append("route")
    ctx.context["routed"] = ctx.context.get("routed", 0) + 1


def open_account(ctx):
    """Work that writes to the database: opens one customer account for the run."""
    from billing.models import Customer

    CALLS.append("open_account")
    Customer.objects.create(tenant_id=ctx.tenant_id, name=f"Account of {ctx.journey_id}", currency="EUR")


quick = register(
    Journey(
        name="kernel-quick",
        start="route",
        states=[
            Task("route", route, next="openAccount"),
            Task("openAccount", open_account, next="done"),
            Succeed("done", output=lambda c: {"status": "DONE"}),
        ],
    )
)


def copy_account(ctx):
    """Work whose first database action bypasses Django's execute path: a COPY."""
    from django.db import connection
    from django.utils import timezone

    CALLS.append("copy_account")
    columns = "tenant_id, external_ref, name, email, currency, address_line1, address_line2, city, postal_code, country, is_active, created_at, updated_at"
    now = timezone.now()
    with connection.cursor() as cursor, cursor.copy(f"COPY billing_customer ({columns}) FROM STDIN") as copy:
        copy.write_row([ctx.tenant_id, "", f"Copied for {ctx.journey_id}", "", "EUR", "", "", "", "", "", True, now, now])


copying = register(
    Journey(
        name="kernel-copy",
        start="copyAccount",
        states=[Task("copyAccount", copy_account, next="done"), Succeed("done")],
    )
)


def slow_send(ctx):
    """Long outside work (a leased step) that outlives its lease, then asks recovery what it sees."""
    import time

    from django.utils import timezone

    from journeys import engine
    from journeys.models import JourneyRun

    time.sleep(ctx.context["work_seconds"])
    ctx.context["recovered_while_working"] = engine.runs_recover_stalled()
    lease_until = JourneyRun.objects.values_list("lease_until", flat=True).get(pk=ctx.run_pk)
    ctx.context["lease_left_at_the_end"] = (lease_until - timezone.now()).total_seconds()


slow = register(
    Journey(
        name="kernel-slow",
        start="slowSend",
        states=[Task("slowSend", slow_send, transactional=False, next="done"), Succeed("done")],
    )
)
