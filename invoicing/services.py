"""Every write to invoices: drafting, issuing (numbering), cancelling, adjusting, marking overdue."""

from __future__ import annotations

import contextlib
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal

import structlog
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing.models import Charge, Customer
from core.actors import Actor
from core.attribution import audited
from core.db import violated_constraint
from core.errors import Conflict, ValidationFailed
from core.money import ZERO, AmountOutOfRange, check_in_range, fits_currency, line_amount, tax_amount
from core.timezones import business_today
from invoicing.lifecycle import INVOICE_TRANSITIONS, OPEN_STATUSES, AdjustmentType, InvoiceStatus
from invoicing.models import Invoice, InvoiceAdjustment, InvoiceItem, TaxItem
from invoicing.rules import invoice_number, payment_due_date
from tenancy.models import Tenant

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DraftLine:
    description: str
    quantity: Decimal
    unit_amount: Decimal
    tax_rate: Decimal | None = None
    details: dict = field(default_factory=dict)


def _line_field(position: int, charge: Charge | None) -> str:
    """The request field a line came from: explicit items come first, then the charges."""
    return "charges" if charge is not None else f"items[{position}].unitAmount"


def _build_lines(invoice: Invoice, lines: list[DraftLine], charges: list[Charge | None]) -> None:
    items, taxes = [], []
    for position, (line, charge) in enumerate(zip(lines, charges, strict=True)):
        try:
            amount = line_amount(line.quantity, line.unit_amount, invoice.currency)
        except AmountOutOfRange as exc:
            raise ValidationFailed(str(exc), field=_line_field(position, charge)) from None
        item = InvoiceItem(
            tenant_id=invoice.tenant_id,
            invoice=invoice,
            charge=charge,
            subscription_id=charge.subscription_id if charge else None,
            position=position,
            description=line.description,
            quantity=line.quantity,
            unit_amount=line.unit_amount,
            amount=amount,
            tax_rate=line.tax_rate,
            available_to_credit_amount=amount,
            details=line.details,
        )
        items.append(item)
    InvoiceItem.objects.bulk_create(items)
    for item in items:
        if item.tax_rate:
            tax = tax_amount(item.amount, item.tax_rate, invoice.currency)
            taxes.append(
                TaxItem(
                    tenant_id=invoice.tenant_id,
                    invoice=invoice,
                    invoice_item=item,
                    rate=item.tax_rate,
                    taxable_amount=item.amount,
                    amount=tax,
                    available_to_credit_amount=tax,
                )
            )
    TaxItem.objects.bulk_create(taxes)
    invoice.subtotal = sum((i.amount for i in items), ZERO)
    invoice.tax_total = sum((t.amount for t in taxes), ZERO)
    invoice.total = invoice.subtotal + invoice.tax_total
    try:
        check_in_range(invoice.total, what="The invoice total")
    except AmountOutOfRange as exc:
        field = "items" if any(charge is None for charge in charges) else "charges"
        raise ValidationFailed(str(exc), field=field) from None
    invoice.balance = invoice.total - invoice.amount_paid - invoice.amount_credited
    invoice.save(update_fields=["subtotal", "tax_total", "total", "balance", "updated_at"])


def invoice_create_draft(
    *,
    tenant: Tenant,
    actor: Actor,
    customer: Customer,
    lines: list[DraftLine] = (),
    charges: list[Charge] = (),
    period_start: date | None = None,
    period_end: date | None = None,
    memo: str = "",
) -> Invoice:
    """A draft invoice in the customer's currency from explicit lines and/or unbilled charges.

    A charge is billed at most once: taking it onto this invoice fails if another took it first.
    """
    if not lines and not charges:
        raise ValidationFailed("An invoice needs at least one line.", field="items")
    if period_start and period_end and period_end < period_start:
        raise ValidationFailed("The period ends before it starts.", field="periodEnd")
    currency = customer.currency
    all_lines, all_charges = list(lines), [None] * len(lines)
    with audited(actor=actor, reason="invoice drafted"):
        invoice = Invoice.objects.create(
            tenant=tenant,
            customer=customer,
            currency=currency,
            period_start=period_start,
            period_end=period_end,
            memo=memo,
        )
        if charges:
            claimed = Charge.objects.filter(
                pk__in=[c.pk for c in charges], tenant=tenant, customer=customer, invoice__isnull=True
            ).update(invoice=invoice)
            if claimed != len(charges):
                raise Conflict("A charge is already billed or belongs to another customer.", field="charges")
            for charge in Charge.objects.filter(invoice=invoice).order_by("occurred_at", "id"):
                if charge.currency != currency:
                    raise ValidationFailed(
                        "A charge is in another currency than the customer.", field="charges"
                    )
                all_lines.append(
                    DraftLine(
                        description=charge.description,
                        quantity=charge.quantity,
                        unit_amount=charge.unit_amount,
                        tax_rate=charge.tax_rate,
                        details=charge.details,
                    )
                )
                all_charges.append(charge)
        _build_lines(invoice, all_lines, all_charges)
    return invoice


def _lock(invoice: Invoice) -> Invoice:
    return Invoice.objects.select_for_update().get(pk=invoice.pk)


def _allocate_number(*, tenant: Tenant, year: int) -> str:
    """Next invoice number for the tenant and year, inside the caller's transaction.

    The counter row stays locked until the issuing transaction ends, so concurrent issues queue
    up behind it and a rollback hands the number back: no gap, no duplicate.
    """
    sql_update = (
        "UPDATE invoicing_invoicenumbersequence SET last_value = last_value + 1 "
        "WHERE tenant_id = %s AND year = %s RETURNING last_value"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql_update, [tenant.pk, year])
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                "INSERT INTO invoicing_invoicenumbersequence (tenant_id, year, last_value) VALUES (%s, %s, 0) "
                "ON CONFLICT (tenant_id, year) DO NOTHING",
                [tenant.pk, year],
            )
            cursor.execute(sql_update, [tenant.pk, year])
            row = cursor.fetchone()
    return invoice_number(tenant.invoice_number_prefix, year, row[0])


def invoice_issue(
    *, invoice: Invoice, actor: Actor, issue_date: date | None = None, due_date: date | None = None
) -> Invoice:
    """draft → payment_due: number it, date it, and send it by email after commit."""
    with audited(actor=actor, reason="invoice issued"):
        locked = _lock(invoice)
        INVOICE_TRANSITIONS.check(locked.status, InvoiceStatus.PAYMENT_DUE)
        if locked.total <= ZERO:
            raise ValidationFailed("An invoice with a zero total cannot be issued.", field="total")
        tenant = locked.tenant
        issued_on = issue_date or business_today()
        try:
            due_on = due_date or payment_due_date(issued_on, tenant.payment_terms_days)
        except OverflowError:
            raise ValidationFailed(
                f"{issued_on.isoformat()} + {tenant.payment_terms_days} days of payment terms is after 9999-12-31.",
                field="issueDate",
            ) from None
        if due_on < issued_on:
            raise ValidationFailed("The due date is before the issue date.", field="dueDate")
        locked.number = _allocate_number(tenant=tenant, year=issued_on.year)
        locked.status = InvoiceStatus.PAYMENT_DUE
        locked.issue_date = issued_on
        locked.due_date = due_on
        locked.save(update_fields=["number", "status", "issue_date", "due_date", "updated_at"])
        from invoicing.tasks import send_invoice_email

        transaction.on_commit(lambda: send_invoice_email.delay(locked.pk))
    log.info("invoice.issued", tenant=tenant.pk, invoice=locked.pk, number=locked.number)
    return locked


def invoice_cancel(*, invoice: Invoice, actor: Actor, reason: str) -> Invoice:
    """Cancel a draft or unpaid invoice; its charges become billable again."""
    with audited(actor=actor, reason=reason or "invoice cancelled"):
        locked = _lock(invoice)
        ensure_not_consolidated(locked, action="cancelled")
        INVOICE_TRANSITIONS.check(locked.status, InvoiceStatus.CANCELLED)
        if locked.amount_paid > ZERO:
            raise Conflict(
                "An invoice with payments applied cannot be cancelled.",
                extra={"amountPaid": str(locked.amount_paid)},
            )
        locked.status = InvoiceStatus.CANCELLED
        locked.cancelled_at = timezone.now()
        locked.save(update_fields=["status", "cancelled_at", "updated_at"])
        invoices_release_charges(invoice_ids=[locked.pk], released_at=locked.cancelled_at)
    return locked


def invoices_release_charges(*, invoice_ids: list[int], released_at) -> int:
    """Give the charges of cancelled invoices back to be billed again, inside the caller's
    transaction. The cancelled invoices' lines keep naming their charge (history), marked released,
    so a charge is on one live line at most. Returns how many charges were released."""
    InvoiceItem.objects.filter(invoice_id__in=invoice_ids, released_at__isnull=True).update(released_at=released_at)
    return Charge.objects.filter(invoice_id__in=invoice_ids).update(invoice=None)


def invoices_mark_overdue(*, tenant: Tenant | None = None, today: date | None = None, actor: Actor) -> int:
    """Every open invoice past its due date and not fully paid becomes overdue. Returns the count."""
    today = today or business_today()
    candidates = Invoice.objects.filter(
        status__in=[InvoiceStatus.PAYMENT_DUE, InvoiceStatus.PARTIALLY_PAID],
        due_date__lt=today,
        balance__gt=ZERO,
    )
    if tenant is not None:
        candidates = candidates.filter(tenant=tenant)
    with audited(actor=actor, reason=f"past due on {today.isoformat()}"):
        return candidates.update(status=InvoiceStatus.OVERDUE, updated_at=timezone.now())


class InvoiceConsolidated(Conflict):
    """The invoice is on an issued consolidated invoice: it changes only through that one."""

    code = "invoice-consolidated"
    title = "Invoice is on a consolidated invoice"


class CreditExceedsBalance(ValidationFailed):
    code = "credit-exceeds-balance"
    title = "Credit exceeds what is unpaid"


# The consolidated invoice whose settlement is running in this context (see
# through_consolidated_invoice): its own sources may be settled, no other consolidated source.
_SETTLING_CONSOLIDATED: ContextVar[int | None] = ContextVar("settling_consolidated", default=None)


@contextlib.contextmanager
def through_consolidated_invoice(consolidated_invoice_id: int) -> Iterator[None]:
    """Inside this block the sources of `consolidated_invoice_id` may be settled: consolidation
    pays a consolidated invoice by settling each source through the ordinary three-way path."""
    token = _SETTLING_CONSOLIDATED.set(consolidated_invoice_id)
    try:
        yield
    finally:
        _SETTLING_CONSOLIDATED.reset(token)


def ensure_not_consolidated(invoice: Invoice, *, action: str) -> None:
    """Raise InvoiceConsolidated (409) if `invoice` (locked by the caller) is on an issued
    consolidated invoice, unless that consolidated invoice is being settled in this context."""
    if invoice.consolidated_into_id is None or _SETTLING_CONSOLIDATED.get() == invoice.consolidated_into_id:
        return
    number = invoice.consolidated_into_number or f"#{invoice.consolidated_into_id}"
    raise InvoiceConsolidated(
        f"Invoice {invoice.number} is on consolidated invoice {number}: it cannot be {action} on its own; "
        "it changes only through the consolidated invoice.",
        extra={
            "consolidatedInvoiceId": invoice.consolidated_into_id,
            "consolidatedInvoiceNumber": invoice.consolidated_into_number,
        },
    )


def invoices_mark_consolidated(*, marks: list[tuple[int, int, str]], actor: Actor) -> int:
    """(invoice id, consolidated invoice id, its number) for each source of an issued
    consolidated invoice: from now on those invoices change only through it. Set-based."""
    if not marks:
        return 0
    invoice_ids, ci_ids, numbers = (list(column) for column in zip(*marks, strict=True))
    with audited(actor=actor, reason="put on an issued consolidated invoice"), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE invoicing_invoice i SET consolidated_into_id = m.ci_id, consolidated_into_number = m.number, "
            "updated_at = now() FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS m(invoice_id, ci_id, number) "
            "WHERE i.id = m.invoice_id AND i.consolidated_into_id IS NULL",
            [invoice_ids, ci_ids, numbers],
        )
        return cursor.rowcount


def invoice_adjust(
    *,
    invoice: Invoice,
    actor: Actor,
    type: str,
    amount: Decimal,
    reason: str,
    source: str,
    idempotency_key: str,
    invoice_item: InvoiceItem | None = None,
    tax_item: TaxItem | None = None,
) -> InvoiceAdjustment:
    """Credit or charge one line of an issued invoice, once per idempotency key.

    A credit takes at most min(the line's available amount, the invoice's balance): an open
    invoice never goes below zero. Racing calls with one key all get the one adjustment.
    """
    if (invoice_item is None) == (tax_item is None):
        raise ValidationFailed("Adjust exactly one invoice item or tax item.", field="invoiceItem")
    if type not in AdjustmentType.values:
        raise ValidationFailed(f"type must be one of {', '.join(AdjustmentType.values)}.", field="type")
    if amount <= ZERO or not fits_currency(amount, invoice.currency):
        raise ValidationFailed("The amount must be positive and fit the currency.", field="amount")
    line_model = InvoiceItem if invoice_item is not None else TaxItem
    line_id = (invoice_item or tax_item).pk

    def existing() -> InvoiceAdjustment | None:
        return InvoiceAdjustment.objects.filter(tenant_id=invoice.tenant_id, idempotency_key=idempotency_key).first()

    with audited(actor=actor, reason=reason):
        if (found := existing()) is not None:
            return found
        locked = _lock(invoice)
        # a racer with the same key on this invoice held the lock until it committed: look again
        if (found := existing()) is not None:
            return found
        ensure_not_consolidated(locked, action="adjusted")
        if locked.status not in OPEN_STATUSES:
            raise Conflict(
                "Only an issued, unsettled invoice can be adjusted.", extra={"currentStatus": locked.status}
            )
        line = line_model.objects.select_for_update().get(pk=line_id, invoice=locked)
        if type == AdjustmentType.CREDIT:
            limit = min(line.available_to_credit_amount, max(locked.balance, ZERO))
            if amount > limit:
                raise CreditExceedsBalance(
                    f"A credit may take at most {limit} {locked.currency}: the line has "
                    f"{line.available_to_credit_amount} available and the invoice {locked.balance} unpaid.",
                    field="amount",
                    extra={
                        "maximum": str(limit),
                        "lineAvailable": str(line.available_to_credit_amount),
                        "balance": str(locked.balance),
                    },
                )
        adjustment = InvoiceAdjustment(
            tenant_id=locked.tenant_id,
            invoice=locked,
            invoice_item=invoice_item,
            tax_item=tax_item,
            type=type,
            amount=amount,
            reason=reason,
            source=source,
            idempotency_key=idempotency_key,
        )
        try:
            # a racer with the same key on another invoice: its insert wins, this one rolls back here
            with transaction.atomic():
                _apply_adjustments([adjustment])
        except IntegrityError as exc:
            if violated_constraint(exc) != "adjustment_unique_idempotency_key":
                raise
            return existing()
        locked.refresh_from_db(fields=["amount_credited", "balance", "updated_at"])
        return adjustment


# Rows per INSERT of adjustments: a chunk's write-off (thousands) stays a few statements without
# building one statement of unbounded size.
ADJUSTMENT_INSERT_BATCH = 2000


def _signed(adjustment: InvoiceAdjustment) -> Decimal:
    """What an adjustment takes off its line and its invoice's balance: a credit lowers, a charge raises."""
    return adjustment.amount if adjustment.type == AdjustmentType.CREDIT else -adjustment.amount


def _by_id(deltas: Mapping[int, Decimal]) -> list[list]:
    """(ids, deltas) as two arrays for unnest()."""
    return [list(deltas), list(deltas.values())]


_LINE_ADJUSTED_SQL = """
UPDATE {table} t SET available_to_credit_amount = t.available_to_credit_amount - v.delta
FROM unnest(%s::bigint[], %s::numeric[]) AS v(id, delta) WHERE t.id = v.id
"""
# balance = total − paid − credited, as the invoice_balance_equation constraint says.
_INVOICE_ADJUSTED_SQL = """
UPDATE invoicing_invoice i SET amount_credited = i.amount_credited + v.delta,
       balance = i.total - i.amount_paid - (i.amount_credited + v.delta), {status}updated_at = now()
FROM unnest(%s::bigint[], %s::numeric[]) AS v(id, delta) WHERE i.id = v.id {guard}
"""


def _apply_adjustments(adjustments: list[InvoiceAdjustment], *, status: str = "", guard: str = "") -> int:
    """The one place an adjustment changes the books, set-based inside the caller's transaction (the
    callers have locked and checked the invoices): the adjustment rows are inserted, each signed
    amount comes off its line's available-to-credit amount and onto its invoice's amount credited.
    `status` (SET items) and `guard` (AND conditions on i) are constant SQL. One statement per
    table; returns how many invoices changed."""
    lines: dict[str, dict[int, Decimal]] = {
        "invoicing_invoiceitem": defaultdict(Decimal),
        "invoicing_taxitem": defaultdict(Decimal),
    }
    invoices: dict[int, Decimal] = defaultdict(Decimal)
    for adjustment in adjustments:
        signed = _signed(adjustment)
        if adjustment.invoice_item_id is not None:
            lines["invoicing_invoiceitem"][adjustment.invoice_item_id] += signed
        else:
            lines["invoicing_taxitem"][adjustment.tax_item_id] += signed
        invoices[adjustment.invoice_id] += signed
    InvoiceAdjustment.objects.bulk_create(adjustments, batch_size=ADJUSTMENT_INSERT_BATCH)
    with connection.cursor() as cursor:
        for table, deltas in lines.items():
            if deltas:
                cursor.execute(_LINE_ADJUSTED_SQL.format(table=table), _by_id(deltas))
        if not invoices:
            return 0
        cursor.execute(_INVOICE_ADJUSTED_SQL.format(status=status, guard=guard), _by_id(invoices))
        return cursor.rowcount


@dataclass(frozen=True, slots=True)
class LineAdjustment:
    """One adjustment of one line of an invoice: exactly one of invoice_item_id and tax_item_id."""

    invoice_id: int
    type: str  # AdjustmentType
    amount: Decimal  # positive
    reason: str
    source: str
    idempotency_key: str
    invoice_item_id: int | None = None
    tax_item_id: int | None = None


class WriteOffIncomplete(RuntimeError):
    """Not every invoice could be written off as planned: the caller's transaction must roll back."""


# A written-off invoice leaves dunning for good; the transition table allows that only from overdue.
_WRITE_OFF_STATUS = "status = 'written_off', written_off_at = now(), "
# Only an overdue invoice whose adjustments bring its balance to exactly zero is written off.
_WRITE_OFF_GUARD = "AND i.status = 'overdue' AND i.balance = v.delta"


def invoices_write_off(*, tenant_id: int, adjustments: Sequence[LineAdjustment]) -> int:
    """Set-based write-off in the caller's (audited) transaction: every invoice named by
    `adjustments` (locked and found open by the caller, its adjustments summing to its whole
    balance) is moved to overdue if it is not yet, then written off with its adjustments applied
    (balance 0). Raises WriteOffIncomplete unless every one was written off. Returns how many."""
    # The two statements below may only make moves the transition table allows (IllegalTransition if not).
    for status in OPEN_STATUSES:
        if status != InvoiceStatus.OVERDUE:
            INVOICE_TRANSITIONS.check(status, InvoiceStatus.OVERDUE)
    INVOICE_TRANSITIONS.check(InvoiceStatus.OVERDUE, InvoiceStatus.WRITTEN_OFF)
    rows = [InvoiceAdjustment(tenant_id=tenant_id, **asdict(a)) for a in adjustments]
    if any((row.invoice_item_id is None) == (row.tax_item_id is None) for row in rows):
        raise ValueError("an adjustment names exactly one invoice item or tax item")
    invoice_ids = sorted({row.invoice_id for row in rows})
    if not invoice_ids:
        return 0
    Invoice.objects.filter(pk__in=invoice_ids, tenant_id=tenant_id, status__in=OPEN_STATUSES).exclude(
        status=InvoiceStatus.OVERDUE
    ).update(status=InvoiceStatus.OVERDUE)
    changed = _apply_adjustments(rows, status=_WRITE_OFF_STATUS, guard=_WRITE_OFF_GUARD)
    if changed != len(invoice_ids):
        raise WriteOffIncomplete(f"write-off changed {changed} of {len(invoice_ids)} invoices")
    return changed


def invoice_send_email(*, invoice_id: int, actor: Actor) -> bool:
    """Email an issued invoice to its customer once; a second call sends nothing. True if sent."""
    from invoicing.emails import email_once, send_invoice_document

    with audited(actor=actor, reason="invoice emailed"):
        invoice = Invoice.objects.select_for_update().select_related("customer", "tenant").get(pk=invoice_id)
        if invoice.sent_at is not None or invoice.status == InvoiceStatus.DRAFT:
            return False
        if not email_once(invoice, send_invoice_document, log=log, no_email_event="invoice_send.no_email", invoice=invoice.pk):
            return False
    log.info("invoice.sent", tenant=invoice.tenant_id, invoice=invoice.pk)
    return True


# --- Settlements (applied by reconciliation) ---------------------------------------------------
# Only a reconciled match (invoice, payment and bank entry agree) reaches these services: a
# payment alone never settles an invoice. Every status change goes through INVOICE_TRANSITIONS.

# An invoice can take money while it can still become paid (payment_due, partially_paid, overdue).
SETTLEABLE_STATUSES = tuple(s for s in InvoiceStatus if INVOICE_TRANSITIONS.is_allowed(s, InvoiceStatus.PAID))
# A part-payment leaves these statuses as they are: partially_paid stays, and an overdue invoice
# stays overdue (its balance shrinks) so dunning keeps seeing that it is late.
_PART_PAYMENT_KEEPS = (InvoiceStatus.PARTIALLY_PAID, InvoiceStatus.OVERDUE)


class InvoiceCannotTakeBack(Conflict):
    """Unmatching would leave the books inconsistent: the invoice cannot take the money back."""

    code = "invoice-cannot-take-back"
    title = "The invoice cannot take the money back"


class InvoiceWrittenOff(InvoiceCannotTakeBack):
    code = "invoice-written-off"
    title = "The invoice is written off"


class InvoiceCancelled(InvoiceCannotTakeBack):
    code = "invoice-cancelled"
    title = "The invoice is cancelled"


class ToleranceNotBookable(Conflict):
    code = "tolerance-not-bookable"
    title = "The tolerance cannot be booked"


@dataclass(frozen=True, slots=True)
class SettlementResult:
    invoice_id: int
    received: Decimal
    # What went onto the invoice: at most its balance.
    applied: Decimal
    status: str

    @property
    def excess(self) -> Decimal:
        return self.received - self.applied


def _part_payment_status(current: str) -> str:
    if current in _PART_PAYMENT_KEEPS:
        return current
    INVOICE_TRANSITIONS.check(current, InvoiceStatus.PARTIALLY_PAID)
    return InvoiceStatus.PARTIALLY_PAID


# A payment short of the balance by no more than the tolerance settles the invoice: the shortfall
# is booked as this credit, so a paid invoice always has balance 0.
TOLERANCE_SOURCE = "tolerance"
TOLERANCE_REASON = "payment tolerance"


def invoice_book_tolerance_credit(
    *, invoice: Invoice, actor: Actor, amount: Decimal, idempotency_key: str
) -> list[InvoiceAdjustment]:
    """Credit `amount` (what a payment fell short within the tolerance) on the open invoice's
    lines that have an amount available, fewest adjustments first (largest available first),
    once per `idempotency_key`: a second call returns the first call's adjustments."""
    if amount <= ZERO or not fits_currency(amount, invoice.currency):
        raise ValidationFailed("A tolerance credit must be positive and fit the currency.", field="amount")
    prefix = f"{idempotency_key}:"
    with audited(actor=actor, reason=TOLERANCE_REASON):
        existing = list(
            InvoiceAdjustment.objects.filter(
                tenant_id=invoice.tenant_id, idempotency_key__startswith=prefix
            ).order_by("id")
        )
        if existing:
            return existing
        locked = _lock(invoice)
        if locked.status not in OPEN_STATUSES or amount > locked.balance:
            raise ToleranceNotBookable(
                "Only an open invoice's balance can be credited as payment tolerance.",
                extra={"currentStatus": locked.status, "balance": str(locked.balance)},
            )
        lines = [
            (item.available_to_credit_amount, 0, item.pk, item)
            for item in InvoiceItem.objects.filter(invoice=locked, available_to_credit_amount__gt=ZERO)
        ] + [
            (tax.available_to_credit_amount, 1, tax.pk, tax)
            for tax in TaxItem.objects.filter(invoice=locked, available_to_credit_amount__gt=ZERO)
        ]
        lines.sort(key=lambda line: (-line[0], line[1], line[2]))
        made, remaining = [], amount
        for number, (available, kind, _, line) in enumerate(lines, start=1):
            if remaining <= ZERO:
                break
            take = min(available, remaining)
            made.append(
                invoice_adjust(
                    invoice=locked,
                    actor=actor,
                    type=AdjustmentType.CREDIT,
                    amount=take,
                    reason=TOLERANCE_REASON,
                    source=TOLERANCE_SOURCE,
                    idempotency_key=f"{prefix}{number}",
                    invoice_item=line if kind == 0 else None,
                    tax_item=line if kind == 1 else None,
                )
            )
            remaining -= take
        if remaining > ZERO:
            raise ToleranceNotBookable(
                "The invoice's lines have too little left to credit the payment tolerance.",
                extra={"missing": str(remaining)},
            )
    log.info("invoice.tolerance_credited", tenant=locked.tenant_id, invoice=locked.pk, amount=str(amount))
    return made


def invoice_apply_settlement(*, invoice: Invoice, actor: Actor, amount: Decimal, reason: str) -> SettlementResult:
    """Apply reconciled money to one open invoice: all of the balance → paid (balance 0), less →
    partially_paid; more is not applied (the caller records the excess). A shortfall within a
    tolerance is booked first with invoice_book_tolerance_credit."""
    if amount <= ZERO or not fits_currency(amount, invoice.currency):
        raise ValidationFailed("A settlement must be positive and fit the currency.", field="amount")
    with audited(actor=actor, reason=reason):
        locked = _lock(invoice)
        ensure_not_consolidated(locked, action="settled")
        if locked.status not in SETTLEABLE_STATUSES:
            INVOICE_TRANSITIONS.check(locked.status, InvoiceStatus.PAID)
        applied = min(amount, max(locked.balance, ZERO))
        settles = amount >= locked.balance
        locked.amount_paid += applied
        locked.balance -= applied
        if settles:
            locked.status = InvoiceStatus.PAID
            locked.paid_at = timezone.now()
        else:
            locked.status = _part_payment_status(locked.status)
        locked.save(update_fields=["amount_paid", "balance", "status", "paid_at", "updated_at"])
    log.info("invoice.settled", tenant=locked.tenant_id, invoice=locked.pk, applied=str(applied))
    return SettlementResult(invoice_id=locked.pk, received=amount, applied=applied, status=locked.status)


# Allocation rows are never negative (a negative one would lower amount_paid): the GREATEST keeps
# a bad row from doing harm, and the caller's allocation guarantees it. An invoice settles only
# when it receives its whole balance (tolerance shortfalls are credited beforehand), so paid
# always means balance 0.
_SETTLE_SQL = """
WITH s AS (
    SELECT t.invoice_id, sum(GREATEST(t.amount, 0)) AS amount FROM {source} t GROUP BY t.invoice_id
), c AS (
    SELECT i.id, s.amount, LEAST(s.amount, GREATEST(i.balance, 0)) AS applied,
           s.amount >= i.balance AS settles,
           coalesce((%(tolerances)s::jsonb ->> i.currency)::numeric, 0) AS tolerance
    FROM invoicing_invoice i JOIN s ON s.invoice_id = i.id
    WHERE i.tenant_id = %(tenant)s AND i.status = ANY(%(sources)s)
      -- a consolidated source takes money only through its consolidated invoice (the matcher
      -- classifies such entries as consolidated_source before they get here)
      AND i.consolidated_into_id IS NULL
), updated AS (
    UPDATE invoicing_invoice i SET
        amount_paid = i.amount_paid + c.applied,
        balance = i.balance - c.applied,
        status = CASE WHEN c.settles THEN %(paid)s
                      WHEN i.status = ANY(%(keep)s) THEN i.status
                      ELSE %(partial)s END,
        paid_at = CASE WHEN c.settles THEN %(now)s ELSE i.paid_at END,
        updated_at = %(now)s
    -- an allocation of nothing changes nothing (it must not turn payment_due into partially_paid)
    FROM c WHERE c.id = i.id AND (c.applied > 0 OR c.settles)
    RETURNING i.id, c.amount - c.applied AS excess, c.tolerance
)
SELECT count(*), coalesce(array_agg(id) FILTER (WHERE excess > tolerance), '{{}}'),
       coalesce(array_agg(excess) FILTER (WHERE excess > tolerance), '{{}}')
FROM updated
"""
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class SettlementSummary:
    invoices_settled: int
    # (invoice id, amount received beyond its balance) where that exceeds its currency's tolerance.
    overpaid: list[tuple[int, Decimal]]


def invoices_apply_settlements(
    *,
    tenant_id: int,
    actor: Actor,
    allocations_table: str,
    tolerances: Mapping[str, Decimal] | None = None,
    reason: str,
) -> SettlementSummary:
    """Set-based invoice_apply_settlement: one UPDATE … FROM over a table of (invoice_id, amount)
    rows in the caller's transaction (several rows for one invoice add up). Invoices that cannot
    take money are left alone. An excess within its currency's tolerance (`tolerances`, currency
    → amount, 0 when not listed) is not reported. Nothing is read row by row into Python."""
    if not _IDENTIFIER.match(allocations_table):
        raise ValueError(f"not a table name: {allocations_table!r}")
    # The CASE may only pick targets the transition table allows from every source status.
    assert all(INVOICE_TRANSITIONS.is_allowed(s, InvoiceStatus.PAID) for s in SETTLEABLE_STATUSES)
    assert all(
        s in _PART_PAYMENT_KEEPS or INVOICE_TRANSITIONS.is_allowed(s, InvoiceStatus.PARTIALLY_PAID)
        for s in SETTLEABLE_STATUSES
    )
    with audited(actor=actor, reason=reason), connection.cursor() as cursor:
        cursor.execute(
            _SETTLE_SQL.format(source=allocations_table),
            {
                "tolerances": json.dumps({c: str(a) for c, a in (tolerances or {}).items()}),
                "tenant": tenant_id,
                "sources": list(SETTLEABLE_STATUSES),
                "keep": list(_PART_PAYMENT_KEEPS),
                "paid": InvoiceStatus.PAID,
                "partial": InvoiceStatus.PARTIALLY_PAID,
                "now": timezone.now(),
            },
        )
        count, ids, excess = cursor.fetchone()
    return SettlementSummary(invoices_settled=count, overpaid=list(zip(ids, excess, strict=True)))


def invoice_reverse_settlement(*, invoice: Invoice, actor: Actor, amount: Decimal, reason: str) -> Invoice:
    """Take back money a reconciliation applied, only where the books stay consistent (balance =
    total − paid − credited, a status matching the balance) and the transition table allows the
    resulting status. Refused with a Conflict (409), changing nothing: a written-off or cancelled
    invoice (InvoiceWrittenOff, InvoiceCancelled), a paid one (final) and a part-paid one that would
    return to payment_due (IllegalTransition)."""
    with audited(actor=actor, reason=reason):
        locked = _lock(invoice)
        # a consolidated source's balance is on an issued document: it changes only through it
        ensure_not_consolidated(locked, action="unmatched")
        if locked.status == InvoiceStatus.WRITTEN_OFF:
            raise InvoiceWrittenOff(
                "The invoice is written off: reverse the write-off before unmatching its payment.",
                extra={"currentStatus": locked.status},
            )
        if locked.status == InvoiceStatus.CANCELLED:
            raise InvoiceCancelled(
                "The invoice is cancelled: it has no payment to take back.",
                extra={"currentStatus": locked.status},
            )
        if locked.status not in SETTLEABLE_STATUSES and locked.status != InvoiceStatus.PAID:
            raise InvoiceCannotTakeBack(
                f"A {locked.status} invoice has no payment to take back.", extra={"currentStatus": locked.status}
            )
        if amount < ZERO or amount > locked.amount_paid:
            raise InvoiceCannotTakeBack(
                "The invoice has less paid than the amount to reverse.",
                extra={"amountPaid": str(locked.amount_paid), "amount": str(amount)},
            )
        remaining = locked.amount_paid - amount
        target = locked.status
        if locked.status == InvoiceStatus.PAID:
            target = InvoiceStatus.PARTIALLY_PAID if remaining > ZERO else InvoiceStatus.PAYMENT_DUE
        elif remaining == ZERO and locked.status == InvoiceStatus.PARTIALLY_PAID:
            target = InvoiceStatus.PAYMENT_DUE
        if target != locked.status:
            INVOICE_TRANSITIONS.check(locked.status, target)
        locked.status = target
        locked.amount_paid = remaining
        locked.balance += amount
        locked.save(update_fields=["status", "amount_paid", "balance", "updated_at"])
    return locked
