"""Local ledger: write off Ledgerflow's own invoices, a chunk of candidates per transaction, set-based.

Per chunk: lock the pending candidates (skip those another worker holds) and their invoices, read
every line in two queries, plan each invoice in Python, then hand the whole chunk's adjustments to
invoicing's set-based `invoices_write_off` (one statement per table: adjustments, item and tax-item
availability, invoice balances and statuses) and record the candidates' outcomes in one statement.
The audit triggers are statement-level, so each statement is recorded whole. Adjustments and the
candidate's outcome commit together: a killed worker leaves the candidate pending and nothing applied.

Status: a zeroed invoice becomes written_off. INVOICE_TRANSITIONS allows that only from overdue, so
invoicing first moves a payment_due or partially_paid invoice to overdue in the same transaction
(both legal transitions, both in the audit trail): the subscription is gone and the balance is not
collectable.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

import structlog
from django.db import connection

from core.money import ZERO
from invoicing.lifecycle import OPEN_STATUSES, AdjustmentType
from invoicing.models import Invoice, InvoiceAdjustment, InvoiceItem, TaxItem
from invoicing.services import LineAdjustment, invoices_write_off
from writeoffs.models import CandidateStatus, WriteOffCandidate
from writeoffs.providers import CREDIT, Line, WriteOffFailed, idempotency_key, plan_adjustments

log = structlog.get_logger(__name__)

ITEM, TAX = "InvoiceDetail", "Tax"


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: str
    written_off: Decimal = ZERO
    adjustments: int = 0
    error: str = ""


def _values_update(table: str, set_sql: str, columns: str, casts: tuple[str, ...], rows: list[tuple], where: str = "") -> int:
    """UPDATE table … FROM (VALUES …): one statement for many rows. Names are constants, never input."""
    if not rows:
        return 0
    placeholder = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    sql = (
        f"UPDATE {table} AS t SET {set_sql} FROM (VALUES {', '.join([placeholder] * len(rows))}) AS v({columns}) "  # noqa: S608
        f"WHERE t.id = v.id {where}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in row])
        return cursor.rowcount


def apply_chunk(*, tenant_id: int, run_pk: int, candidate_ids: list[int]) -> int:
    """Write off the chunk's pending candidates inside the caller's (audited) transaction; count done.

    Business refusals (status, not enough available) fail that candidate only; an unexpected
    database error raises, and the caller retries the chunk one candidate at a time.
    """
    candidates = list(
        WriteOffCandidate.objects.select_for_update(skip_locked=True)
        .filter(pk__in=candidate_ids, run_id=run_pk, tenant_id=tenant_id, status=CandidateStatus.PENDING)
        .order_by("pk")
    )
    if not candidates:
        return 0
    invoice_ids = sorted({c.invoice_id for c in candidates})
    invoices = {
        invoice.pk: invoice
        for invoice in Invoice.objects.select_for_update()
        .filter(pk__in=invoice_ids, tenant_id=tenant_id)
        .order_by("pk")
        .only("pk", "status", "balance", "currency", "tenant_id", "consolidated_into_id", "consolidated_into_number")
    }
    lines: dict[int, list[Line]] = defaultdict(list)
    for model, kind, prefix in ((InvoiceItem, ITEM, "item"), (TaxItem, TAX, "tax")):
        rows = (
            model.objects.filter(invoice_id__in=invoice_ids, tenant_id=tenant_id)
            .exclude(available_to_credit_amount=ZERO)
            .values_list("pk", "invoice_id", "available_to_credit_amount")
        )
        for pk, invoice_id, available in rows:
            lines[invoice_id].append(Line(ref=f"{prefix}-{pk}", kind=kind, available=available, pk=pk))

    outcomes: dict[int, _Outcome] = {}
    plans = {}
    for candidate in candidates:
        invoice = invoices[candidate.invoice_id]
        if invoice.balance == ZERO:
            outcomes[candidate.pk] = _Outcome(CandidateStatus.SKIPPED, error="balance already zero")
        elif invoice.consolidated_into_id is not None:
            outcomes[candidate.pk] = _Outcome(
                CandidateStatus.FAILED,
                error=f"on consolidated invoice {invoice.consolidated_into_number or invoice.consolidated_into_id}: "
                "it changes only through the consolidated invoice",
            )
        elif invoice.status not in OPEN_STATUSES:
            outcomes[candidate.pk] = _Outcome(CandidateStatus.FAILED, error=f"an invoice in status {invoice.status} cannot be written off")
        else:
            try:
                plans[candidate.pk] = plan_adjustments(invoice.balance, lines[invoice.pk])
            except WriteOffFailed as exc:
                outcomes[candidate.pk] = _Outcome(CandidateStatus.FAILED, error=exc.detail)

    by_pk = {c.pk: c for c in candidates}
    keys = {
        pk: [idempotency_key(invoice_ref=str(by_pk[pk].invoice_id), line_ref=p.line.ref, business_date=by_pk[pk].business_date) for p in plan]
        for pk, plan in plans.items()
    }
    used = set(
        InvoiceAdjustment.objects.filter(tenant_id=tenant_id, idempotency_key__in=[k for ks in keys.values() for k in ks]).values_list(
            "idempotency_key", flat=True
        )
    )
    adjustments = []
    for candidate in candidates:
        plan = plans.get(candidate.pk)
        if plan is None:
            continue
        if used.intersection(keys[candidate.pk]):
            outcomes[candidate.pk] = _Outcome(CandidateStatus.FAILED, error="already adjusted under this run's keys by another path")
            continue
        invoice = invoices[candidate.invoice_id]
        for planned, key in zip(plan, keys[candidate.pk], strict=True):
            adjustments.append(
                LineAdjustment(
                    invoice_id=invoice.pk,
                    invoice_item_id=planned.line.pk if planned.line.kind == ITEM else None,
                    tax_item_id=planned.line.pk if planned.line.kind == TAX else None,
                    type=AdjustmentType.CREDIT if planned.type == CREDIT else AdjustmentType.CHARGE,
                    amount=planned.amount,
                    reason=f"daily write-off {candidate.business_date.isoformat()}: cancelled subscription ({candidate.source})",
                    source="writeoff",
                    idempotency_key=key,
                )
            )
        outcomes[candidate.pk] = _Outcome(CandidateStatus.SUCCEEDED, written_off=invoice.balance, adjustments=len(plan))

    # invoicing applies the adjustments and the statuses; a shortfall raises and rolls the chunk back
    invoices_write_off(tenant_id=tenant_id, adjustments=adjustments)
    _values_update(
        "writeoffs_writeoffcandidate",
        "status = v.status, written_off_amount = v.amount, adjustments = v.n, error = v.error, processed_at = now()",
        "id, status, amount, n, error",
        ("bigint", "text", "numeric", "integer", "text"),
        [(pk, o.status, o.written_off, o.adjustments, o.error) for pk, o in outcomes.items()],
        where="AND t.status = 'pending'",
    )
    log.info("writeoff_chunk.applied", tenant=tenant_id, run=run_pk, candidates=len(candidates), adjustments=len(adjustments))
    return len(candidates)
