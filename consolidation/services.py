"""Every write of consolidation: customer settings, building drafts (set-based), approval outcomes,
issuing with gapless numbers, sending, settling, marking overdue, and starting runs.

Invariants:
- One consolidated invoice per (customer, period) that is not cancelled: a partial unique index,
  and inserts that do nothing on conflict, so racing beats, workers or manual triggers make one.
- A source invoice is in at most one consolidated invoice: the line's unique source_invoice_id
  is the "included" mark, written in the same statement that creates the line.
- A customer's draft, its lines and its totals commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import structlog
from django.db import connection
from django.utils import timezone

from billing.models import Customer, Payment
from consolidation import selectors
from consolidation.lifecycle import (
    CONSOLIDATED_TRANSITIONS,
    SOURCE_STATUSES,
    ConsolidatedStatus,
    KycStatus,
    PeriodType,
)
from consolidation.models import (
    ConsolidatedInvoice,
    ConsolidatedInvoiceLine,
    ConsolidationSettings,
    CustomerBillingPeriod,
)
from consolidation.periods import (
    PeriodOutOfRange,
    consolidated_number_sql,
    period_containing,
    period_key_sql,
    start_day_range,
)
from consolidation.selectors import JOURNEY_NAME, Target
from core.actors import Actor
from core.attribution import audited
from core.errors import ApplicationError, Conflict, ValidationFailed
from core.money import ZERO
from core.timezones import business_today
from invoicing.emails import email_once
from invoicing.models import Invoice
from invoicing.rules import payment_due_date
from journeys.public import run_start
from tenancy.models import Tenant

if TYPE_CHECKING:
    from reconciliation.models import BankEntry

log = structlog.get_logger(__name__)

# Customers per build transaction: ~30 source invoices each, so about 30,000 lines per statement —
# large enough that per-statement overhead vanishes, small enough that a transaction holds its
# locks for well under a second and a failure redoes little.
BUILD_CHUNK = 1000
# Consolidated invoices per chunk of the journey's sendInvoices Map: each renders a PDF and waits on
# SMTP, so a chunk of a few stays well inside the step lease and a retried chunk resends nothing sent.
SEND_CHUNK = 5
# Send chunks of one run in flight at once (the io queue's other work keeps its share).
SEND_CHUNKS_IN_FLIGHT = 4


class CustomerNotEnabled(Conflict):
    code = "customer-not-enabled"
    title = "Customer not enabled for consolidation"


class PeriodAlreadyConsolidated(Conflict):
    code = "period-already-consolidated"
    title = "Period already consolidated"


class NoInvoicesInPeriod(ApplicationError):
    status = 422
    code = "no-invoices-in-period"
    title = "No invoices to consolidate"


# --- Tenant settings -----------------------------------------------------------------------------
def consolidation_settings_update(
    *, tenant: Tenant, actor: Actor, number_prefix: str | None = None, final_invoice_on_disable: bool | None = None
) -> ConsolidationSettings:
    """A tenant's consolidation settings (a prefix of 1–16 letters, digits or dashes); audited."""
    if number_prefix is not None and not (
        0 < len(number_prefix) <= 16 and all(c.isascii() and (c.isalnum() or c == "-") for c in number_prefix)
    ):
        raise ValidationFailed("The number prefix is 1 to 16 letters, digits or dashes.", field="numberPrefix")
    with audited(actor=actor, reason="consolidation settings changed"):
        found, _ = ConsolidationSettings.objects.select_for_update().get_or_create(tenant=tenant)
        if number_prefix is not None:
            found.number_prefix = number_prefix
        if final_invoice_on_disable is not None:
            found.final_invoice_on_disable = final_invoice_on_disable
        found.save()
    return found


# --- Customer settings ---------------------------------------------------------------------------
def customer_billing_period_update(
    *,
    customer: Customer,
    actor: Actor,
    enabled: bool | None = None,
    period_type: str | None = None,
    start_day: int | None = None,
    kyc_status: str | None = None,
    today: date | None = None,
) -> CustomerBillingPeriod:
    """Create or change a customer's consolidation settings.

    Turning it off mid-period keeps the open period for one final consolidated invoice (unless the
    tenant says otherwise); turning it on starts with today's invoices.
    """
    today = today or business_today()
    with audited(actor=actor, reason="consolidation settings changed"):
        row, _ = CustomerBillingPeriod.objects.select_for_update().get_or_create(
            customer=customer, defaults={"tenant_id": customer.tenant_id}
        )
        was_enabled = row.enabled
        if period_type is not None:
            if period_type not in PeriodType.values:
                raise ValidationFailed(f"billingPeriodType must be one of {', '.join(PeriodType.values)}.", field="billingPeriodType")
            row.period_type = period_type
        if start_day is not None:
            row.start_day = start_day
        if start_day is not None or period_type is not None:
            allowed = start_day_range(row.period_type)
            if row.start_day not in allowed:
                raise ValidationFailed(
                    f"billingPeriodStartDay must be {allowed.start}–{allowed.stop - 1} for {row.period_type}.",
                    field="billingPeriodStartDay",
                )
        if kyc_status is not None:
            if kyc_status not in KycStatus.values:
                raise ValidationFailed(f"kycStatus must be one of {', '.join(KycStatus.values)}.", field="kycStatus")
            row.kyc_status = kyc_status
        if enabled is True and not was_enabled:
            pending_final = row.final_period_end is not None and row.final_period_end >= today
            if not pending_final or row.enabled_since is None:
                row.enabled_since = today
            row.enabled = True
            row.disabled_on = row.final_period_start = row.final_period_end = None
        elif enabled is False and was_enabled:
            row.enabled = False
            row.disabled_on = today
            if selectors.tenant_settings(customer.tenant_id).final_invoice_on_disable:
                period = period_containing(today, period_type=row.period_type, start_day=row.start_day)
                row.final_period_start, row.final_period_end = period.start, period.end
        row.save()
    return row


# --- Building drafts (set-based) -----------------------------------------------------------------
_ELIGIBLE = f"""
    i.customer_id = t.customer_id
    AND i.status IN ({", ".join(f"'{s}'" for s in SOURCE_STATUSES)})
    AND i.balance > 0
    AND i.issue_date <= t.until
    AND (t.since IS NULL OR i.issue_date >= t.since)
    AND NOT EXISTS (SELECT 1 FROM consolidation_consolidatedinvoiceline x WHERE x.source_invoice_id = i.id)
"""

_BUILD_SQL = f"""
WITH targets AS (
    SELECT * FROM unnest(%(customers)s::bigint[], %(types)s::text[], %(starts)s::date[], %(ends)s::date[],
                         %(sinces)s::date[], %(untils)s::date[], %(currencies)s::text[])
        AS t(customer_id, period_type, period_start, period_end, since, until, currency)
),
new_ci AS (
    INSERT INTO consolidation_consolidatedinvoice
        (tenant_id, customer_id, period_type, period_start, period_end, status, currency, total,
         totals_by_currency, invoice_count, firs, countries, aircraft, payment_reference, journey_run_id,
         created_at, updated_at)
    SELECT %(tenant)s, t.customer_id, t.period_type, t.period_start, t.period_end, 'DRAFT', t.currency, 0,
           '{{}}'::jsonb, 0, '[]'::jsonb, '[]'::jsonb, '[]'::jsonb, '', %(run)s, now(), now()
    FROM targets t
    WHERE EXISTS (SELECT 1 FROM invoicing_invoice i WHERE {_ELIGIBLE})
    ON CONFLICT (customer_id, period_start, period_end) WHERE status <> 'CANCELLED' DO NOTHING
    RETURNING id, customer_id
),
new_lines AS (
    INSERT INTO consolidation_consolidatedinvoiceline
        (tenant_id, consolidated_invoice_id, source_invoice_id, invoice_number, invoice_date, amount, currency, details)
    SELECT %(tenant)s, c.id, i.id, i.number, i.issue_date, i.balance, i.currency,
           coalesce((SELECT jsonb_agg(ii.details ORDER BY ii.position, ii.id)
                     FROM invoicing_invoiceitem ii
                     WHERE ii.invoice_id = i.id AND ii.details <> '{{}}'::jsonb), '[]'::jsonb)
    FROM new_ci c
    JOIN targets t ON t.customer_id = c.customer_id
    JOIN invoicing_invoice i ON {_ELIGIBLE}
    ON CONFLICT (source_invoice_id) DO NOTHING
    RETURNING consolidated_invoice_id
)
SELECT c.id FROM new_ci c
WHERE EXISTS (SELECT 1 FROM new_lines l WHERE l.consolidated_invoice_id = c.id)
"""


def _facts(key: str) -> str:
    """Distinct values of a details key (an array, or a single string) across a draft's charges."""
    return f"""
    SELECT l.consolidated_invoice_id AS id, jsonb_agg(DISTINCT v ORDER BY v) AS vals
    FROM consolidation_consolidatedinvoiceline l
    CROSS JOIN LATERAL jsonb_array_elements(l.details) AS d(charge)
    CROSS JOIN LATERAL jsonb_array_elements_text(
        CASE jsonb_typeof(d.charge -> '{key}')
            WHEN 'array' THEN d.charge -> '{key}'
            WHEN 'string' THEN jsonb_build_array(d.charge -> '{key}')
            ELSE '[]'::jsonb END) AS v
    WHERE l.consolidated_invoice_id = ANY(%(ids)s)
    GROUP BY 1
    """


_TOTALS_SQL = f"""
WITH per_currency AS (
    SELECT l.consolidated_invoice_id AS id, l.currency, sum(l.amount) AS amount, count(*) AS n
    FROM consolidation_consolidatedinvoiceline l
    WHERE l.consolidated_invoice_id = ANY(%(ids)s)
    GROUP BY 1, 2
),
totals AS (
    SELECT id, jsonb_object_agg(currency, amount::text) AS by_currency, sum(n) AS n FROM per_currency GROUP BY id
),
firs AS ({_facts("firs")}),
countries AS ({_facts("countries")}),
aircraft AS ({_facts("aircraft")})
UPDATE consolidation_consolidatedinvoice ci
SET totals_by_currency = t.by_currency,
    total = coalesce((t.by_currency ->> ci.currency)::numeric, 0),
    invoice_count = t.n,
    firs = coalesce(f.vals, '[]'::jsonb),
    countries = coalesce(c.vals, '[]'::jsonb),
    aircraft = coalesce(a.vals, '[]'::jsonb),
    updated_at = now()
FROM totals t
LEFT JOIN firs f ON f.id = t.id
LEFT JOIN countries c ON c.id = t.id
LEFT JOIN aircraft a ON a.id = t.id
WHERE ci.id = t.id
"""

# A draft whose every source was taken by a racing consolidation of another period in the same
# instant has no line: it must not exist (zero invoices make no consolidated invoice).
_DROP_EMPTY_SQL = """
DELETE FROM consolidation_consolidatedinvoice ci
WHERE ci.tenant_id = %(tenant)s AND ci.journey_run_id = %(run)s AND ci.status = 'DRAFT' AND ci.invoice_count = 0
  AND NOT EXISTS (SELECT 1 FROM consolidation_consolidatedinvoiceline l WHERE l.consolidated_invoice_id = ci.id)
"""


def _build_chunk(*, tenant_id: int, run_pk: int, targets: list[Target]) -> list[int]:
    """Drafts, lines and totals for these targets in the caller's transaction. Returns the new ids."""
    params = {
        "tenant": tenant_id,
        "run": run_pk,
        "customers": [t.customer_id for t in targets],
        "types": [t.period.type for t in targets],
        "starts": [t.period.start for t in targets],
        "ends": [t.period.end for t in targets],
        "sinces": [t.since for t in targets],
        "untils": [t.until for t in targets],
        "currencies": [t.currency for t in targets],
    }
    with connection.cursor() as cursor:
        cursor.execute(_BUILD_SQL, params)
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            cursor.execute(_TOTALS_SQL, {"ids": ids})
        cursor.execute(_DROP_EMPTY_SQL, {"tenant": tenant_id, "run": run_pk})
    return ids


@dataclass(frozen=True, slots=True)
class BuildSummary:
    customers: int
    created: int


def drafts_build(*, tenant_id: int, run_pk: int, day: date, customer_ids: list[int], actor: Actor) -> BuildSummary:
    """Draft consolidated invoices for the customers whose period ends on `day`, chunk by chunk.

    Each chunk is one transaction, so a failure leaves every customer either fully built (earlier
    chunks) or untouched; running it again builds only what is missing.
    """
    created = 0
    for offset in range(0, len(customer_ids), BUILD_CHUNK):
        chunk = customer_ids[offset : offset + BUILD_CHUNK]
        targets = selectors.targets_for(customer_ids=chunk, day=day)
        with audited(actor=actor, reason=f"consolidation drafted for {day.isoformat()}"):
            created += len(_build_chunk(tenant_id=tenant_id, run_pk=run_pk, targets=targets))
    log.info("consolidation.drafts_built", tenant=tenant_id, run=run_pk, customers=len(customer_ids), created=created)
    return BuildSummary(customers=len(customer_ids), created=created)


# --- Approval outcome, issue ---------------------------------------------------------------------
def drafts_discard(*, run_pk: int, actor: Actor) -> int:
    """A rejected run's drafts are cancelled and their sources released (they go into a later period)."""
    with audited(actor=actor, reason="consolidation rejected"):
        ids = list(
            ConsolidatedInvoice.objects.select_for_update()
            .filter(journey_run_id=run_pk, status=ConsolidatedStatus.DRAFT)
            .values_list("id", flat=True)
        )
        ConsolidatedInvoiceLine.objects.filter(consolidated_invoice_id__in=ids).delete()
        return ConsolidatedInvoice.objects.filter(pk__in=ids).update(
            status=ConsolidatedStatus.CANCELLED, updated_at=timezone.now()
        )


_PERIOD_KEY = period_key_sql("period_type", "period_start")
_NUMBER = consolidated_number_sql("%(prefix)s", "r.period_key", "b.base + r.rn")

_ISSUE_SQL = f"""
WITH bases AS (
    SELECT * FROM unnest(%(keys)s::text[], %(bases)s::int[]) AS b(period_key, base)
),
ranked AS (
    SELECT id, {_PERIOD_KEY} AS period_key,
           row_number() OVER (PARTITION BY {_PERIOD_KEY} ORDER BY customer_id, id) AS rn
    FROM consolidation_consolidatedinvoice
    WHERE journey_run_id = %(run)s AND status = 'DRAFT'
)
UPDATE consolidation_consolidatedinvoice ci
SET number = {_NUMBER},
    status = 'PENDING', issue_date = %(issued)s, due_date = %(due)s, updated_at = now()
FROM ranked r JOIN bases b ON b.period_key = r.period_key
WHERE ci.id = r.id
RETURNING ci.id
"""


def _reserve_numbers(*, tenant_id: int, counts: dict[str, int]) -> dict[str, int]:
    """Reserve counts[key] numbers per period key; returns the last value before each block.

    The counter rows stay locked until the issuing transaction ends (locked in key order, so two
    issuers never deadlock): a rollback hands the block back — no gap, no duplicate.
    """
    bases = {}
    with connection.cursor() as cursor:
        for key in sorted(counts):
            cursor.execute(
                "INSERT INTO consolidation_consolidationnumbersequence (tenant_id, period_key, last_value) "
                "VALUES (%s, %s, 0) ON CONFLICT (tenant_id, period_key) DO NOTHING",
                [tenant_id, key],
            )
            cursor.execute(
                "UPDATE consolidation_consolidationnumbersequence SET last_value = last_value + %s "
                "WHERE tenant_id = %s AND period_key = %s RETURNING last_value - %s",
                [counts[key], tenant_id, key, counts[key]],
            )
            bases[key] = cursor.fetchone()[0]
    return bases


# Drafts follow their sources up to the moment they are issued: the sources are locked, a source
# that no longer owes anything (cancelled, paid, written off, credited to zero) leaves its draft,
# every other line takes the source's balance now, and a draft left without lines is cancelled.
_DRAFT_SOURCES = """
    FROM consolidation_consolidatedinvoiceline l
    JOIN consolidation_consolidatedinvoice ci ON ci.id = l.consolidated_invoice_id
    WHERE ci.journey_run_id = %(run)s AND ci.status = 'DRAFT' AND l.source_invoice_id = i.id
"""
_LOCK_SOURCES_SQL = f"""
SELECT i.id FROM invoicing_invoice i
WHERE EXISTS (SELECT 1 {_DRAFT_SOURCES}) ORDER BY i.id FOR UPDATE
"""
_DROP_SETTLED_SOURCES_SQL = f"""
DELETE FROM consolidation_consolidatedinvoiceline x
USING invoicing_invoice i
WHERE x.source_invoice_id = i.id AND EXISTS (SELECT 1 {_DRAFT_SOURCES} AND l.id = x.id)
  AND (i.status <> ALL(%(sources)s) OR i.balance <= 0)
"""
_FOLLOW_BALANCES_SQL = f"""
UPDATE consolidation_consolidatedinvoiceline x SET amount = i.balance
FROM invoicing_invoice i
WHERE x.source_invoice_id = i.id AND EXISTS (SELECT 1 {_DRAFT_SOURCES} AND l.id = x.id) AND x.amount <> i.balance
"""
_CANCEL_EMPTY_DRAFTS_SQL = """
UPDATE consolidation_consolidatedinvoice ci SET status = 'CANCELLED', total = 0, totals_by_currency = '{}'::jsonb,
       invoice_count = 0, updated_at = now()
WHERE ci.journey_run_id = %(run)s AND ci.status = 'DRAFT'
  AND NOT EXISTS (SELECT 1 FROM consolidation_consolidatedinvoiceline l WHERE l.consolidated_invoice_id = ci.id)
"""


def _refresh_drafts(*, run_pk: int) -> None:
    """The run's drafts (locked by the caller) follow their sources, in the caller's transaction."""
    params = {"run": run_pk, "sources": list(SOURCE_STATUSES)}
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_SOURCES_SQL, params)
        cursor.execute(_DROP_SETTLED_SOURCES_SQL, params)
        cursor.execute(_FOLLOW_BALANCES_SQL, params)
        cursor.execute(
            "SELECT id FROM consolidation_consolidatedinvoice WHERE journey_run_id = %s AND status = 'DRAFT'", [run_pk]
        )
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            cursor.execute(_TOTALS_SQL, {"ids": ids})
        cursor.execute(_CANCEL_EMPTY_DRAFTS_SQL, params)


def drafts_issue(*, run_pk: int, tenant: Tenant, actor: Actor, issue_date: date | None = None) -> int:
    """The run's drafts become PENDING: checked against their sources first (a total is what the
    sources still owe; a draft whose sources owe nothing is cancelled), numbered per period without
    gaps, dated and due after the tenant's payment terms (the journey's sendInvoices step emails
    them). From then on each source changes only through its consolidated invoice. Returns how many
    were issued."""
    from invoicing.services import invoices_mark_consolidated

    issued_on = issue_date or business_today()
    due_on = payment_due_date(issued_on, tenant.payment_terms_days)
    prefix = selectors.tenant_settings(tenant.pk).number_prefix
    with audited(actor=actor, reason="consolidated invoices issued"):
        with connection.cursor() as cursor:
            # lock the drafts so a concurrent discard or issue of the same run waits
            cursor.execute(
                "SELECT id FROM consolidation_consolidatedinvoice WHERE journey_run_id = %s AND status = 'DRAFT' "
                "ORDER BY id FOR UPDATE",
                [run_pk],
            )
            if not cursor.fetchall():
                return 0
            _refresh_drafts(run_pk=run_pk)
            cursor.execute(
                f"SELECT {_PERIOD_KEY}, count(*) FROM consolidation_consolidatedinvoice "  # noqa: S608 - constant SQL
                "WHERE journey_run_id = %s AND status = 'DRAFT' GROUP BY 1",
                [run_pk],
            )
            counts = dict(cursor.fetchall())
            if not counts:
                return 0
            bases = _reserve_numbers(tenant_id=tenant.pk, counts=counts)
            cursor.execute(
                _ISSUE_SQL,
                {
                    "run": run_pk,
                    "keys": list(bases),
                    "bases": list(bases.values()),
                    "prefix": prefix,
                    "issued": issued_on,
                    "due": due_on,
                },
            )
            ids = sorted(row[0] for row in cursor.fetchall())
        marks = list(
            ConsolidatedInvoiceLine.objects.filter(consolidated_invoice_id__in=ids).values_list(
                "source_invoice_id", "consolidated_invoice_id", "consolidated_invoice__number"
            )
        )
        invoices_mark_consolidated(marks=marks, actor=actor)
    log.info("consolidation.issued", tenant=tenant.pk, run=run_pk, count=len(ids))
    return len(ids)


def consolidated_unsent_ids(*, run_pk: int) -> list[int]:
    """The run's issued consolidated invoices not emailed yet: the sendInvoices Map's input."""
    return list(
        ConsolidatedInvoice.objects.filter(journey_run_id=run_pk, sent_at__isnull=True)
        .exclude(status__in=(ConsolidatedStatus.DRAFT, ConsolidatedStatus.CANCELLED))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# --- Sending -------------------------------------------------------------------------------------
def consolidated_invoice_send(*, consolidated_invoice_id: int, actor: Actor) -> bool:
    """Email an issued consolidated invoice with its PDF once; a second call sends nothing."""
    from consolidation.emails import send_consolidated_invoice

    with audited(actor=actor, reason="consolidated invoice emailed"):
        ci = (
            ConsolidatedInvoice.objects.select_for_update(of=("self",))
            .select_related("customer", "tenant")
            .filter(pk=consolidated_invoice_id)
            .first()
        )
        if ci is None or ci.sent_at is not None or ci.status in (ConsolidatedStatus.DRAFT, ConsolidatedStatus.CANCELLED):
            return False
        sent = email_once(
            ci, send_consolidated_invoice, log=log, no_email_event="consolidated_send.no_email", consolidated_invoice=ci.pk
        )
        if not sent:
            return False
    log.info("consolidated.sent", tenant=ci.tenant_id, consolidated_invoice=ci.pk, number=ci.number)
    return True


# --- Payment, overdue ----------------------------------------------------------------------------
class ConsolidatedInvoicePaid(Conflict):
    code = "consolidated-invoice-paid"
    title = "Consolidated invoice already paid"


class ConsolidatedInvoiceOwesNothing(Conflict):
    code = "consolidated-invoice-owes-nothing"
    title = "Consolidated invoice owes nothing"


def _owed_by_sources(ci: ConsolidatedInvoice) -> list[tuple[Invoice, Decimal]]:
    """Lock the sources and bring the lines and total to what each source still owes now; returns
    (source, amount) for the sources that owe something."""
    lines = {line.source_invoice_id: line for line in ci.lines.all()}
    sources = list(Invoice.objects.select_for_update().filter(pk__in=list(lines)).order_by("pk"))
    owed = []
    for source in sources:
        amount = source.balance if source.status in SOURCE_STATUSES and source.balance > ZERO else ZERO
        line = lines[source.pk]
        if line.amount != amount:
            line.amount = amount
            line.save(update_fields=["amount"])
        if amount > ZERO:
            owed.append((source, amount))
    with connection.cursor() as cursor:
        cursor.execute(_TOTALS_SQL, {"ids": [ci.pk]})
    ci.refresh_from_db()
    return owed


def consolidated_invoice_settle(
    *,
    consolidated_invoice: ConsolidatedInvoice,
    actor: Actor,
    bank_entry: BankEntry | None,
    payment: Payment | None,
    reason: str = "",
) -> ConsolidatedInvoice:
    """A bank entry and its payment pay the whole consolidated invoice: PENDING/OVERDUE → PAID.

    The same three-way path as any payment: each source is settled by what it still owes through
    reconciliation_match_manual (so each source's amount_paid grows by exactly what was applied,
    and a reconciliation names the payment and the bank entry). The entry and the payment must
    each cover what the sources owe; a partial payment is not a settlement (it stays with
    reconciliation). The same entry and payment again is a no-op; another one is refused (409).
    """
    from invoicing.services import through_consolidated_invoice
    from reconciliation.models import Reconciliation, ReconciliationStatus
    from reconciliation.services import cursor_lock, reconciliation_match_manual

    if bank_entry is None:
        raise ValidationFailed("Name the bank entry that paid the consolidated invoice.", field="bankEntry")
    if payment is None:
        raise ValidationFailed("Name the payment the bank entry brought: no invoice is paid without one.", field="payment")
    with audited(actor=actor, reason=f"consolidated invoice paid {reason}".strip()):
        # The tenant's matching lock first, as a matching run takes it before any invoice row:
        # the same order on both sides, so settling never deadlocks against a run.
        cursor_lock(consolidated_invoice.tenant_id)
        ci = ConsolidatedInvoice.objects.select_for_update().get(pk=consolidated_invoice.pk)
        if bank_entry.tenant_id != ci.tenant_id or bank_entry.currency != ci.currency:
            raise ValidationFailed(
                f"The bank entry must be the tenant's and in {ci.currency}.", field="bankEntry", extra={"currency": ci.currency}
            )
        if payment.tenant_id != ci.tenant_id or payment.customer_id != ci.customer_id or payment.currency != ci.currency:
            raise ValidationFailed(
                f"The payment must be the customer's and in {ci.currency}.", field="payment", extra={"currency": ci.currency}
            )
        if ci.status == ConsolidatedStatus.PAID:
            same = Reconciliation.objects.filter(
                invoice__consolidation_line__consolidated_invoice=ci,
                bank_entry_id=bank_entry.pk,
                payment_id=payment.pk,
                status=ReconciliationStatus.RECONCILED,
            ).exists()
            if same:
                return ci
            raise ConsolidatedInvoicePaid(
                f"Consolidated invoice {ci.number} is already paid.", extra={"consolidatedInvoiceId": ci.pk}
            )
        CONSOLIDATED_TRANSITIONS.check(ci.status, ConsolidatedStatus.PAID)
        owed = _owed_by_sources(ci)
        total = sum((amount for _, amount in owed), ZERO)
        if not owed:
            raise ConsolidatedInvoiceOwesNothing(
                f"The sources of {ci.number} owe nothing.", extra={"consolidatedInvoiceId": ci.pk}
            )
        for field, amount in (("bankEntry", bank_entry.amount), ("payment", payment.amount)):
            if amount < total:
                raise ValidationFailed(
                    f"The {field} brings {amount} {ci.currency}; the consolidated invoice owes {total}: "
                    "a partial payment is not a settlement.",
                    field=field,
                    extra={"total": str(total), "currency": ci.currency},
                )
        with through_consolidated_invoice(ci.pk):
            reconciliation_match_manual(
                tenant=ci.tenant,
                actor=actor,
                bank_entry=bank_entry,
                invoices=owed,
                payment=payment,
                reason=f"consolidated invoice {ci.number} {reason}".strip(),
            )
        unpaid = Invoice.objects.filter(pk__in=[source.pk for source, _ in owed]).exclude(status="paid").count()
        if unpaid:
            raise Conflict(f"{unpaid} source(s) of {ci.number} were not settled in full.", extra={"consolidatedInvoiceId": ci.pk})
        ci.status = ConsolidatedStatus.PAID
        ci.paid_at = timezone.now()
        ci.payment_reference = (bank_entry.reference or payment.reference or payment.rail_transaction_id)[:200]
        ci.save(update_fields=["status", "paid_at", "payment_reference", "updated_at"])
    log.info("consolidated.paid", tenant=ci.tenant_id, consolidated_invoice=ci.pk, sources=len(owed))
    return ci


def consolidated_invoices_mark_overdue(*, actor: Actor, today: date | None = None) -> int:
    """Every PENDING consolidated invoice past its due date becomes OVERDUE. Returns the count."""
    today = today or business_today()
    with audited(actor=actor, reason=f"past due on {today.isoformat()}"):
        return ConsolidatedInvoice.objects.filter(status=ConsolidatedStatus.PENDING, due_date__lt=today).update(
            status=ConsolidatedStatus.OVERDUE, updated_at=timezone.now()
        )


# --- Starting runs -------------------------------------------------------------------------------
def daily_runs_start(*, actor: Actor, now: datetime | None = None) -> int:
    """One run per tenant with a customer due on today's business date; twice starts nothing more."""
    day = business_today(now)
    started = 0
    for tenant in Tenant.objects.filter(pk__in=selectors.tenants_due(day=day)).order_by("pk"):
        _, created = run_start(
            journey_name=JOURNEY_NAME,
            tenant=tenant,
            actor=actor,
            context={"businessDate": day.isoformat(), "trigger": "beat"},
            subject_id=f"daily:{day.isoformat()}",
            dedupe_key=f"daily:{day.isoformat()}",
        )
        started += created
    log.info("consolidation.daily_runs_started", day=day.isoformat(), started=started)
    return started


def consolidation_trigger(*, tenant: Tenant, actor: Actor, user=None, now: datetime | None = None):
    """Start the daily journey for this tenant now (operator's trigger). Anything already
    consolidated stays so: a second trigger finds nothing left to build."""
    day = business_today(now)
    run, _ = run_start(
        journey_name=JOURNEY_NAME,
        tenant=tenant,
        actor=actor,
        context={"businessDate": day.isoformat(), "trigger": "manual"},
        subject_id=f"manual:{day.isoformat()}",
        started_by=user,
    )
    return run


@dataclass(frozen=True, slots=True)
class Generated:
    invoice: ConsolidatedInvoice
    run: object


def consolidated_generate(
    *, customer: Customer, actor: Actor, user=None, period_start: date | None = None, today: date | None = None
) -> Generated:
    """Build one customer's consolidated invoice for a period (default: the current one) now, then
    continue it through the same journey (approval per tenant policy, issue).

    Raises CustomerNotEnabled, PeriodAlreadyConsolidated or NoInvoicesInPeriod; then nothing is written.
    """
    settings_row = CustomerBillingPeriod.objects.filter(customer=customer).first()
    if settings_row is None or not settings_row.enabled or settings_row.kyc_status != KycStatus.APPROVED:
        raise CustomerNotEnabled(
            "The customer is not enabled for consolidated billing (enabled, with KYC APPROVED).",
            extra={"customerId": customer.pk},
        )
    today = today or business_today()
    try:
        period = period_containing(
            period_start or today, period_type=settings_row.period_type, start_day=settings_row.start_day
        )
    except PeriodOutOfRange as exc:
        raise ValidationFailed(f"{exc}.", field="periodStart") from None
    if period_start is not None and period.start != period_start:
        raise ValidationFailed(
            f"{period_start.isoformat()} does not start a billing period of this customer (that period starts "
            f"{period.start.isoformat()}).",
            field="periodStart",
        )
    target = Target(customer.pk, period, settings_row.enabled_since, period.end, customer.currency)

    def already() -> ConsolidatedInvoice | None:
        return (
            ConsolidatedInvoice.objects.filter(customer=customer, period_start=period.start, period_end=period.end)
            .exclude(status=ConsolidatedStatus.CANCELLED)
            .first()
        )

    def refuse_existing(existing: ConsolidatedInvoice) -> None:
        raise PeriodAlreadyConsolidated(
            f"{period.start.isoformat()}–{period.end.isoformat()} is already consolidated.",
            extra={"consolidatedInvoiceId": existing.pk, "number": existing.number},
        )

    with audited(actor=actor, reason="consolidation generated"):
        if (existing := already()) is not None:
            refuse_existing(existing)
        run, _ = run_start(
            journey_name=JOURNEY_NAME,
            tenant=customer.tenant,
            actor=actor,
            context={"businessDate": today.isoformat(), "trigger": "generate", "customerIds": [customer.pk]},
            subject_id=f"customer:{customer.pk}",
            started_by=user,
            start_at="decideApproval",
        )
        ids = _build_chunk(tenant_id=customer.tenant_id, run_pk=run.pk, targets=[target])
        if not ids:
            # a racing generate or run may have just committed this period: it waited for it
            if (existing := already()) is not None:
                refuse_existing(existing)
            raise NoInvoicesInPeriod(
                f"No unconsolidated invoices in {period.start.isoformat()}–{period.end.isoformat()}.",
                extra={"periodStart": period.start.isoformat(), "periodEnd": period.end.isoformat()},
            )
    return Generated(invoice=ConsolidatedInvoice.objects.get(pk=ids[0]), run=run)
