"""The journey `daily-consolidation`: one run per tenant and business date (and one per manual
trigger or generate), consolidating the invoices of every customer whose billing period ends.

    selectCustomers   enabled, KYC-approved customers whose period (or final period) ends today
    buildDrafts       per chunk of customers, one transaction: drafts, a line per source invoice
                      (the "included" mark), totals and aggregates — set-based SQL (leased step)
    decideApproval    the drafts' totals; none → nothingToDo
    awaitApproval     step `approveConsolidation` (finance approver, not the preparer); the kernel
                      approves by itself when the tenant's ApprovalPolicy needs nobody (never, or
                      within its threshold)
    issue             drafts → PENDING: numbered, due after the payment terms
    sendInvoices      the kernel's Map state: each issued invoice emailed once with its PDF, a few
                      per chunk task on the io queue, a failed chunk retried with backoff
    discard           rejected: drafts cancelled, their sources released for a later period
"""

from __future__ import annotations

from datetime import date

from consolidation import selectors, services
from journeys.public import Approval, Journey, Map, Policy, Succeed, Task, register
from tenancy.models import Tenant


def _day(ctx) -> date:
    return date.fromisoformat(ctx.context["businessDate"])


def select_customers(ctx) -> str | None:
    ids = selectors.customers_due(tenant_id=ctx.tenant_id, day=_day(ctx))
    ctx.context["customerIds"] = ids
    return None if ids else "nothing"


def build_drafts(ctx) -> str | None:
    summary = services.drafts_build(
        tenant_id=ctx.tenant_id, run_pk=ctx.run_pk, day=_day(ctx), customer_ids=ctx.context["customerIds"], actor=ctx.actor
    )
    ctx.context["built"] = {"customers": summary.customers, "created": summary.created}
    return None


def decide_approval(ctx) -> str:
    drafts = selectors.run_drafts(run_pk=ctx.run_pk)
    ctx.context["drafts"] = {
        "count": drafts.count,
        "invoiceCount": drafts.invoice_count,
        "totalsByCurrency": {c: str(t) for c, t in drafts.totals_by_currency.items()},
    }
    return "nothing" if drafts.count == 0 else "required"


def issue(ctx) -> None:
    tenant = Tenant.objects.get(pk=ctx.tenant_id)
    ctx.context["issued"] = services.drafts_issue(run_pk=ctx.run_pk, tenant=tenant, actor=ctx.actor)


def unsent(ctx) -> list[int]:
    return services.consolidated_unsent_ids(run_pk=ctx.run_pk)


def send_chunk(ctx, consolidated_invoice_ids: list[int]) -> dict:
    """One chunk: each invoice emailed once (one sent before a retry is not sent again)."""
    sent = sum(
        services.consolidated_invoice_send(consolidated_invoice_id=pk, actor=ctx.actor) for pk in consolidated_invoice_ids
    )
    return {"sent": sent}


def discard(ctx) -> None:
    ctx.context["discarded"] = services.drafts_discard(run_pk=ctx.run_pk, actor=ctx.actor)


def _summary(context: dict) -> dict:
    drafts = context.get("drafts", {})
    return {
        "businessDate": context.get("businessDate"),
        "consolidatedInvoices": drafts.get("count", 0),
        "sourceInvoices": drafts.get("invoiceCount", 0),
        "totalsByCurrency": drafts.get("totalsByCurrency", {}),
    }


daily_consolidation = register(
    Journey(
        name=selectors.JOURNEY_NAME,
        start="selectCustomers",
        states=[
            Task("selectCustomers", select_customers, routes={"nothing": "nothingToDo"}, next="buildDrafts"),
            Task("buildDrafts", build_drafts, transactional=False, next="decideApproval"),
            Task(
                "decideApproval",
                decide_approval,
                routes={"required": "awaitApproval", "nothing": "nothingToDo"},
            ),
            Approval(
                "awaitApproval",
                step_id="approveConsolidation",
                routes={"APPROVED": "issue", "REJECTED": "discard"},
                summary=_summary,
                policy=Policy(amounts=lambda context: context["drafts"]["totalsByCurrency"]),
            ),
            Task("issue", issue, next="sendInvoices"),
            Map(
                "sendInvoices",
                items=unsent,
                fn=send_chunk,
                chunk_size=services.SEND_CHUNK,
                concurrency=services.SEND_CHUNKS_IN_FLIGHT,
                queue="io",
                next="issued",
            ),
            Task("discard", discard, next="rejected"),
            Succeed("issued", output=lambda c: {"status": "ISSUED", "issued": c.get("issued", 0), **_summary(c)}),
            Succeed("rejected", output=lambda c: {"status": "REJECTED", "discarded": c.get("discarded", 0)}),
            Succeed("nothingToDo", output=lambda c: {"status": "NOTHING_TO_CONSOLIDATE", **_summary(c)}),
        ],
    )
)
