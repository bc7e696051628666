"""Consolidation vocabularies and the one transition table of a consolidated invoice."""

from django.db import models

from core.state_machine import TransitionTable


class PeriodType(models.TextChoices):
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


class KycStatus(models.TextChoices):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class ConsolidatedStatus(models.TextChoices):
    DRAFT = "DRAFT"  # built, waiting for approval or issue; no number yet
    PENDING = "PENDING"  # issued: numbered, dated, due
    PAID = "PAID"
    OVERDUE = "OVERDUE"
    CANCELLED = "CANCELLED"  # rejected by an approver; its sources were released


S = ConsolidatedStatus

CONSOLIDATED_TRANSITIONS = TransitionTable(
    "ConsolidatedInvoice",
    {
        S.DRAFT: {S.PENDING, S.CANCELLED},
        S.PENDING: {S.PAID, S.OVERDUE},
        S.OVERDUE: {S.PAID},
        S.PAID: set(),
        S.CANCELLED: set(),
    },
)

# Source invoices a consolidation may take: issued and still owed. Drafts have no date or number,
# paid / cancelled / written-off invoices are settled one way or another.
SOURCE_STATUSES = ("payment_due", "partially_paid", "overdue")
