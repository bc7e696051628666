"""Invoice statuses and the one transition table every status change goes through."""

from django.db import models

from core.state_machine import TransitionTable


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft"
    PAYMENT_DUE = "payment_due"
    PARTIALLY_PAID = "partially_paid"
    OVERDUE = "overdue"
    PAID = "paid"
    CANCELLED = "cancelled"
    WRITTEN_OFF = "written_off"


S = InvoiceStatus

INVOICE_TRANSITIONS = TransitionTable(
    "Invoice",
    {
        S.DRAFT: {S.PAYMENT_DUE, S.CANCELLED},
        S.PAYMENT_DUE: {S.PAID, S.OVERDUE, S.PARTIALLY_PAID, S.CANCELLED},
        S.PARTIALLY_PAID: {S.PAID, S.OVERDUE, S.CANCELLED},
        S.OVERDUE: {S.PAID, S.PARTIALLY_PAID, S.CANCELLED, S.WRITTEN_OFF},
        S.PAID: set(),
        S.CANCELLED: set(),
        S.WRITTEN_OFF: set(),
    },
)

# Issued and not settled: what collections, reminders and write-offs look at.
OPEN_STATUSES = (S.PAYMENT_DUE, S.PARTIALLY_PAID, S.OVERDUE)


class AdjustmentType(models.TextChoices):
    CREDIT = "credit"
    CHARGE = "charge"
