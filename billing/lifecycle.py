"""Subscription and payment statuses and the one transition table for payments."""

from django.db import models

from core.state_machine import TransitionTable


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active"
    CANCELLED = "cancelled"


class CancellationSource(models.TextChoices):
    MMA = "MMA"
    AUTOCANCEL = "AUTOCANCEL"
    SALESFORCE = "SALESFORCE"
    UI = "UI"
    API = "API"


class PaymentStatus(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class PaymentMethod(models.TextChoices):
    PAYMENT_LINK = "payment_link"
    BANK_TRANSFER = "bank_transfer"
    GATEWAY = "gateway"
    OFFLINE = "offline"


PAYMENT_TRANSITIONS = TransitionTable(
    "Payment",
    {
        # A rail may decline a payment before it starts processing it.
        PaymentStatus.PENDING: {PaymentStatus.PROCESSING, PaymentStatus.FAILED},
        PaymentStatus.PROCESSING: {PaymentStatus.COMPLETED, PaymentStatus.FAILED},
        PaymentStatus.COMPLETED: set(),
        PaymentStatus.FAILED: set(),
    },
)
