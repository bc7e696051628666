"""Reads worth naming: the operator's queues and the candidates beside an unmatched entry."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q, QuerySet

from billing.lifecycle import PaymentStatus
from billing.models import Payment
from invoicing.lifecycle import OPEN_STATUSES
from invoicing.models import Invoice
from reconciliation.models import (
    ACTIVE_STATUSES,
    BankEntry,
    MatchStatus,
    Reconciliation,
    ReconciliationStatus,
)

_TOKEN = re.compile(r"[A-Za-z0-9/_-]+")
CANDIDATE_LIMIT = 20


def unmatched_entries(*, tenant_id: int) -> QuerySet[BankEntry]:
    return BankEntry.objects.filter(tenant_id=tenant_id, match_status=MatchStatus.UNMATCHED, amount__gt=0)


def open_discrepancies(*, tenant_id: int) -> QuerySet[Reconciliation]:
    return Reconciliation.objects.filter(tenant_id=tenant_id, status=ReconciliationStatus.DISCREPANCY)


@dataclass(frozen=True, slots=True)
class Candidates:
    invoices: list[Invoice]
    payments: list[Payment]


def candidates_for_entry(*, entry: BankEntry) -> Candidates:
    """Open invoices and unreconciled payments an operator would consider for `entry`: named in
    its texts, carrying its reference, or of its exact amount."""
    tokens = set(_TOKEN.findall(f"{entry.reference} {entry.remittance_text}"))
    invoices = (
        Invoice.objects.filter(tenant_id=entry.tenant_id, currency=entry.currency, status__in=OPEN_STATUSES)
        .filter(Q(number__in=tokens) | Q(balance=entry.amount))
        .select_related("customer")
        .order_by("due_date", "id")[:CANDIDATE_LIMIT]
    )
    taken = Reconciliation.objects.filter(payment=OuterRef("pk"), status__in=ACTIVE_STATUSES).exclude(
        discrepancy_kind="missing_bank_entry"
    )
    by_reference = (
        Q(rail_transaction_id=entry.reference) | Q(reference=entry.reference) if entry.reference else Q()
    )
    payments = (
        Payment.objects.filter(tenant_id=entry.tenant_id, currency=entry.currency)
        .exclude(status=PaymentStatus.FAILED)
        .filter(by_reference | Q(amount=entry.amount) if entry.reference else Q(amount=entry.amount))
        .exclude(Exists(taken))
        .select_related("customer")
        .order_by("-id")[:CANDIDATE_LIMIT]
    )
    return Candidates(invoices=list(invoices), payments=list(payments))
