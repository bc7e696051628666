"""The daily write-off of unbalanced invoices left behind by cancellations (journey `daily-write-off`).

Started by beat at WRITEOFF_RUN_HOUR (business time) once per tenant and business date.

1. findCandidates      open invoices with a non-zero balance billing a subscription cancelled 1–5
                       days ago (MMA, AUTOCANCEL, SALESFORCE, UI); one candidate row per invoice.
                       None → report.
2. awaitApproval       step `approveWriteOff`: a finance approver (not the preparer) decides; the
                       approver sees the candidates and totals per currency and per source. The
                       kernel approves by itself when the tenant's ApprovalPolicy needs nobody
                       for these totals (never, or within its threshold).
3. applyWriteOffs      enqueues a Celery group of chunk tasks on the io queue (after commit).
4. awaitingWriteOffs   a short durable timer; then
   checkComplete       done when no candidate is pending in PostgreSQL, else re-arms the timer
                       (and re-enqueues pending candidates when the run made no progress lately).
5. report              counts, totals per currency, failed list; CSV report; notification if any failed.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.conf import settings

from journeys.public import (
    Approval,
    Journey,
    JourneyTimer,
    Policy,
    StepContext,
    Succeed,
    Task,
    Timer,
    register,
)
from writeoffs import services


def _business_date(ctx: StepContext) -> date:
    return date.fromisoformat(ctx.context["businessDate"])


def find_candidates(ctx: StepContext) -> str:
    summary = services.writeoff_find_candidates(run_pk=ctx.run_pk, tenant_id=ctx.tenant_id, business_date=_business_date(ctx))
    ctx.context["candidates"] = summary
    return "empty" if summary["count"] == 0 else "approval"


def approval_summary(context: dict) -> dict:
    return {"businessDate": context.get("businessDate"), **context.get("candidates", {})}


def apply_writeoffs(ctx: StepContext) -> None:
    ctx.context["chunks"] = services.writeoff_dispatch(run_pk=ctx.run_pk, tenant_id=ctx.tenant_id)


def poll_due(context: dict, now: datetime) -> datetime:
    return now + timedelta(seconds=settings.WRITEOFF_POLL_SECONDS)


def check_complete(ctx: StepContext) -> str:
    if services.writeoff_check_complete(run_pk=ctx.run_pk, tenant_id=ctx.tenant_id):
        return "done"
    # the timer state is entered again: its fired row goes, so the kernel can arm a new one
    JourneyTimer.objects.filter(run_id=ctx.run_pk, state=services.WAIT_STATE, fired_at__isnull=False).delete()
    return "pending"


def report(ctx: StepContext) -> None:
    ctx.context["outcome"] = services.writeoff_report(run_pk=ctx.run_pk, tenant_id=ctx.tenant_id)


def discard(ctx: StepContext) -> None:
    services.writeoff_discard(run_pk=ctx.run_pk)


def _output(context: dict) -> dict:
    outcome = context.get("outcome", {})
    failed = outcome.get("counts", {}).get("failed", 0)
    return {"status": "COMPLETED_WITH_FAILURES" if failed else "COMPLETED", "businessDate": context.get("businessDate"), **outcome}


daily_write_off = register(
    Journey(
        name=services.JOURNEY_NAME,
        start="findCandidates",
        states=[
            Task("findCandidates", find_candidates, routes={"approval": "awaitApproval", "empty": "report"}),
            Approval(
                "awaitApproval",
                step_id="approveWriteOff",
                routes={"APPROVED": "applyWriteOffs", "REJECTED": "discard"},
                summary=approval_summary,
                policy=Policy(amounts=lambda context: context["candidates"]["totalsByCurrency"]),
            ),
            Task("applyWriteOffs", apply_writeoffs, next=services.WAIT_STATE),
            Timer(services.WAIT_STATE, due_at=poll_due, next="checkComplete"),
            Task("checkComplete", check_complete, routes={"done": "report", "pending": services.WAIT_STATE}),
            Task("report", report, next="done"),
            Task("discard", discard, next="rejected"),
            Succeed("done", output=_output),
            Succeed("rejected", output=lambda c: {"status": "REJECTED", "businessDate": c.get("businessDate")}),
        ],
    )
)
