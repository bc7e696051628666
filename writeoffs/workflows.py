"""The daily write-off of unbalanced invoices left behind by cancellations (journey `daily-write-off`).

Started by beat at WRITEOFF_RUN_HOUR (business time) once per tenant and business date.

1. findCandidates      open invoices with a non-zero balance billing a subscription cancelled 1–5
                       days ago (MMA, AUTOCANCEL, SALESFORCE, UI); one candidate row per invoice.
                       None → report.
2. awaitApproval       step `approveWriteOff`: a finance approver (not the preparer) decides; the
                       approver sees the candidates and totals per currency and per source. The
                       kernel approves by itself when the tenant's ApprovalPolicy needs nobody
                       for these totals (never, or within its threshold).
3. applyWriteOffs      the kernel's Map state: the run's pending candidates in chunks of a few
                       invoices, each chunk a task on the io queue (at most CHUNKS_IN_FLIGHT at
                       once), a failed chunk retried with backoff; the run moves on once every chunk
                       has an outcome (no polling timer, the kernel's recovery for lost chunks).
4. report              counts, totals per currency, failed list; CSV report; notification if any failed.
"""

from __future__ import annotations

from datetime import date

from journeys.public import Approval, Journey, Map, Policy, StepContext, Succeed, Task, register
from writeoffs import services


def _business_date(ctx: StepContext) -> date:
    return date.fromisoformat(ctx.context["businessDate"])


def find_candidates(ctx: StepContext) -> str:
    summary = services.writeoff_find_candidates(run_pk=ctx.run_pk, tenant_id=ctx.tenant_id, business_date=_business_date(ctx))
    ctx.context["candidates"] = summary
    return "empty" if summary["count"] == 0 else "approval"


def approval_summary(context: dict) -> dict:
    return {"businessDate": context.get("businessDate"), **context.get("candidates", {})}


def pending_candidates(ctx: StepContext) -> list[int]:
    return services.writeoff_pending_ids(run_pk=ctx.run_pk)


def chunk_size(ctx: StepContext) -> int:
    return services.writeoff_chunk_size(ctx.tenant_id)


def apply_chunk(ctx: StepContext, candidate_ids: list[int]) -> dict:
    """One chunk: its invoices written off (each failure recorded on its candidate)."""
    return {"processed": services.writeoff_apply_chunk(run_pk=ctx.run_pk, candidate_ids=candidate_ids, actor=ctx.actor)}


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
            Map(
                "applyWriteOffs",
                items=pending_candidates,
                fn=apply_chunk,
                chunk_size=chunk_size,
                concurrency=services.CHUNKS_IN_FLIGHT,
                queue="io",
                next="report",
            ),
            Task("report", report, next="done"),
            Task("discard", discard, next="rejected"),
            Succeed("done", output=_output),
            Succeed("rejected", output=lambda c: {"status": "REJECTED", "businessDate": c.get("businessDate")}),
        ],
    )
)
