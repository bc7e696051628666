"""Every write to billing records. Services own their transaction and its audit attribution."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.lifecycle import PAYMENT_TRANSITIONS, CancellationSource, PaymentStatus, SubscriptionStatus
from billing.models import Charge, Customer, Payment, Subscription
from core.actors import Actor
from core.attribution import audited
from core.db import violated_constraint
from core.errors import Conflict, ValidationFailed
from core.money import (
    ZERO,
    AmountOutOfRange,
    check_in_range,
    fits_currency,
    get_currency,
    line_amount,
    tax_amount,
)
from tenancy.models import Tenant


class RailTransactionExists(Conflict):
    """Another payment of the tenant carries this rail transaction id (however the race went)."""

    code = "rail-transaction-exists"
    title = "Rail transaction already recorded"


def _require_currency_match(*, customer: Customer, currency: str, field: str = "currency") -> None:
    if currency != customer.currency:
        raise ValidationFailed(
            f"Currency {currency} differs from the customer's billing currency {customer.currency}.",
            field=field,
        )


def _require_fits(*, amount: Decimal, currency: str, field: str) -> None:
    if not fits_currency(amount, currency):
        places = get_currency(currency).minor_units
        raise ValidationFailed(f"{currency} amounts have at most {places} decimal places.", field=field)


def _require_billable(
    *, quantity: Decimal, unit_amount: Decimal, tax_rate: Decimal | None, currency: str, field: str
) -> None:
    """A line of quantity × unit amount (and its tax) must fit an amount, or it could never be invoiced."""
    try:
        amount = line_amount(quantity, unit_amount, currency)
        check_in_range(
            amount + (tax_amount(amount, tax_rate, currency) if tax_rate else ZERO),
            what="The line with its tax",
        )
    except AmountOutOfRange as exc:
        raise ValidationFailed(str(exc), field=field) from None


def _billable_create(
    model, *, tenant, actor, reason, customer, currency, quantity, unit: tuple[str, Decimal, str], tax_rate, **fields
):
    """A subscription or charge: in the customer's currency, its line (and tax) invoiceable, its
    subscription (a charge's) the customer's own. `unit` is (field, unit amount, the API's name)."""
    unit_field, unit_amount, api_field = unit
    _require_currency_match(customer=customer, currency=currency)
    _require_billable(quantity=quantity, unit_amount=unit_amount, tax_rate=tax_rate, currency=currency, field=api_field)
    subscription = fields.get("subscription")
    if subscription is not None and subscription.customer_id != customer.pk:
        raise ValidationFailed("The subscription belongs to another customer.", field="subscription")
    with audited(actor=actor, reason=reason):
        return model.objects.create(
            tenant=tenant,
            customer=customer,
            currency=currency,
            quantity=quantity,
            tax_rate=tax_rate,
            **{unit_field: unit_amount},
            **fields,
        )


def customer_create(*, tenant: Tenant, actor: Actor, name: str, currency: str, **fields: Any) -> Customer:
    """Create a billing account; its currency is fixed for every invoice it will get."""
    get_currency(currency)
    with audited(actor=actor, reason="customer created"):
        return Customer.objects.create(tenant=tenant, name=name, currency=currency, **fields)


def customer_update(*, customer: Customer, actor: Actor, **fields: Any) -> Customer:
    """Update a customer's contact data; the currency cannot change once invoices exist."""
    if "currency" in fields and fields["currency"] != customer.currency and customer.invoices.exists():
        raise ValidationFailed("The currency of a customer with invoices cannot change.", field="currency")
    with audited(actor=actor, reason="customer updated"):
        for name, value in fields.items():
            setattr(customer, name, value)
        customer.save()
    return customer


def subscription_create(
    *,
    tenant: Tenant,
    actor: Actor,
    customer: Customer,
    plan_name: str,
    unit_price: Decimal,
    currency: str,
    started_on: date,
    quantity: Decimal = Decimal(1),
    billing_cadence: str = Subscription.Cadence.MONTHLY,
    tax_rate: Decimal | None = None,
) -> Subscription:
    """Start a subscription billed in the customer's currency."""
    return _billable_create(
        Subscription,
        tenant=tenant,
        actor=actor,
        reason="subscription created",
        customer=customer,
        currency=currency,
        quantity=quantity,
        unit=("unit_price", unit_price, "unitPrice"),
        tax_rate=tax_rate,
        plan_name=plan_name,
        started_on=started_on,
        billing_cadence=billing_cadence,
    )


def subscription_cancel(
    *, subscription: Subscription, actor: Actor, source: str, cancelled_at: datetime | None = None
) -> Subscription:
    """Cancel an active subscription once; cancelling a cancelled one is refused with 409."""
    if source not in CancellationSource.values:
        raise ValidationFailed(f"Unknown cancellation source {source!r}.", field="source")
    with audited(actor=actor, reason=f"subscription cancelled ({source})"):
        locked = Subscription.objects.select_for_update().get(pk=subscription.pk)
        if locked.status != SubscriptionStatus.ACTIVE:
            raise Conflict("The subscription is already cancelled.", extra={"currentStatus": locked.status})
        locked.status = SubscriptionStatus.CANCELLED
        locked.cancelled_at = cancelled_at or timezone.now()
        locked.cancellation_source = source
        locked.save(update_fields=["status", "cancelled_at", "cancellation_source", "updated_at"])
    return locked


def charge_create(
    *,
    tenant: Tenant,
    actor: Actor,
    customer: Customer,
    description: str,
    unit_amount: Decimal,
    currency: str,
    occurred_at: datetime,
    quantity: Decimal = Decimal(1),
    tax_rate: Decimal | None = None,
    subscription: Subscription | None = None,
    details: dict | None = None,
) -> Charge:
    """Record a billable item for the next invoice of its customer."""
    return _billable_create(
        Charge,
        tenant=tenant,
        actor=actor,
        reason="charge recorded",
        customer=customer,
        currency=currency,
        quantity=quantity,
        unit=("unit_amount", unit_amount, "unitAmount"),
        tax_rate=tax_rate,
        subscription=subscription,
        description=description,
        occurred_at=occurred_at,
        details=details or {},
    )


def payment_create(
    *,
    tenant: Tenant,
    actor: Actor,
    customer: Customer,
    method: str,
    amount: Decimal,
    currency: str,
    invoice=None,
    rail_transaction_id: str = "",
    reference: str = "",
) -> Payment:
    """Record a payment as pending. A payment never marks an invoice paid by itself.

    A rail transaction id is recorded once per tenant: a second payment with it, sequential or
    racing, is refused with RailTransactionExists (409, code rail-transaction-exists)."""
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValidationFailed("A payment amount must be a positive decimal.", field="amount")
    _require_currency_match(customer=customer, currency=currency)
    _require_fits(amount=amount, currency=currency, field="amount")
    if invoice is not None and invoice.customer_id != customer.pk:
        raise ValidationFailed("The invoice belongs to another customer.", field="invoice")

    def refuse_duplicate() -> None:
        existing = Payment.objects.filter(tenant=tenant, rail_transaction_id=rail_transaction_id).first()
        raise RailTransactionExists(
            "A payment with this rail transaction id exists.",
            field="railTransactionId",
            extra={"paymentId": existing.pk if existing else None},
        )

    if rail_transaction_id and Payment.objects.filter(tenant=tenant, rail_transaction_id=rail_transaction_id).exists():
        refuse_duplicate()
    with audited(actor=actor, reason="payment recorded"):
        try:
            # a racer with the same rail id commits first: its row wins, this insert rolls back alone
            with transaction.atomic():
                return Payment.objects.create(
                    tenant=tenant,
                    customer=customer,
                    invoice=invoice,
                    method=method,
                    amount=amount,
                    currency=currency,
                    rail_transaction_id=rail_transaction_id,
                    reference=reference,
                )
        except IntegrityError as exc:
            if violated_constraint(exc) != "payment_unique_rail_transaction":
                raise
        refuse_duplicate()


# The instant each status is reached is kept on the payment.
_PAYMENT_TIMESTAMP = {
    PaymentStatus.PROCESSING: "processing_at",
    PaymentStatus.COMPLETED: "completed_at",
    PaymentStatus.FAILED: "failed_at",
}


def payment_path(current: str, target: str) -> list[str] | None:
    """The statuses a payment passes from `current` to `target` under PAYMENT_TRANSITIONS: [target]
    for a legal move, [processing, target] for a pending payment reported completed (the rail never
    said it was processing), None for a move backwards or sideways."""
    if PAYMENT_TRANSITIONS.is_allowed(current, target):
        return [target]
    if current == PaymentStatus.PENDING and PAYMENT_TRANSITIONS.is_allowed(PaymentStatus.PROCESSING, target):
        return [PaymentStatus.PROCESSING, target]
    return None


def _payment_move(locked: Payment, statuses: list[str], *, failure_reason: str) -> None:
    """The one place a payment's status changes: each step checked against PAYMENT_TRANSITIONS and
    stamped, a failure's reason kept, a completion triggering matching (never settling by itself)."""
    now = timezone.now()
    for status in statuses:
        PAYMENT_TRANSITIONS.check(locked.status, status)
        locked.status = status
        setattr(locked, _PAYMENT_TIMESTAMP[status], now)
    if locked.status == PaymentStatus.FAILED:
        locked.failure_reason = failure_reason[:500]
    locked.save()
    if locked.status == PaymentStatus.COMPLETED:
        # Completion does not settle the invoice: matching against the bank does, when it agrees.
        _enqueue_matching(locked.tenant_id)


def _enqueue_matching(tenant_id: int) -> None:
    # By name: billing does not import reconciliation (which depends on billing).
    from celery import current_app

    transaction.on_commit(lambda: current_app.send_task("reconciliation.run_matching", args=[tenant_id]))


def payment_transition(*, payment: Payment, actor: Actor, status: str, reason: str = "") -> Payment:
    """Move a payment along its transition table; an illegal move raises IllegalTransition (409)."""
    with audited(actor=actor, reason=reason or f"payment {status}"):
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        _payment_move(locked, [status], failure_reason=reason)
    return locked


def payment_advance(
    *, payment: Payment, actor: Actor, status: str, reason: str, failure_reason: str = ""
) -> Payment | None:
    """Move a payment forward to `status` as its rail reports it (see payment_path), or change
    nothing and return None when `status` is behind or beside the payment's (an out-of-order event)."""
    with audited(actor=actor, reason=reason):
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        statuses = payment_path(locked.status, status)
        if statuses is None:
            return None
        _payment_move(locked, statuses, failure_reason=failure_reason)
    return locked
