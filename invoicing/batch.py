"""The monthly invoicing batch's work, set-based: draft, validate, cancel, issue, send, chase.

Drafting and validating are single SQL statements over the whole tenant (no query per customer),
so a 100,000-invoice batch costs a handful of statements. Sending is one invoice per short
transaction, claimed with SKIP LOCKED, so a killed worker loses at most the one in flight and a
duplicate worker never sends what another holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from time import monotonic, sleep

import structlog
from django.db import connection
from django.utils import timezone

from core.actors import Actor
from core.attribution import audited
from core.errors import Conflict
from core.money import UNIT_AMOUNT_DECIMAL_PLACES, get_currency, line_amount_sql, round_sql, tax_amount_sql
from core.timezones import business_zone
from invoicing.emails import FINAL_NOTICE, INVOICE, REMINDER, send_invoice_document
from invoicing.lifecycle import OPEN_STATUSES, InvoiceStatus
from invoicing.models import Invoice
from invoicing.rules import invoice_number_sql, payment_due_date
from tenancy.models import Tenant

log = structlog.get_logger(__name__)

# Validation findings kept on the run (the counts per kind are always complete).
MAX_ISSUES_SHOWN = 100


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def previous_month(day: date) -> BillingPeriod:
    """The calendar month before `day`: a run on 1 Dec bills November."""
    end = day.replace(day=1) - timedelta(days=1)
    return BillingPeriod(start=end.replace(day=1), end=end)


def _currency_scales(tenant_id: int) -> str:
    """VALUES rows (code, minor units) for the currencies the tenant bills in."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT currency FROM billing_customer WHERE tenant_id = %s", [tenant_id])
        codes = [row[0] for row in cursor.fetchall()]
    rows = []
    for code in codes:
        try:
            rows.append(f"('{code}', {get_currency(code).minor_units})")
        except ValueError:
            continue  # an unknown currency drafts nothing; validation of new customers prevents it
    return ", ".join(rows) or "('XXX', 2)"


# Every rounding below is the one rule (core.money), written by its SQL builders.
# A subscription's monthly unit price keeps a unit amount's places; its pro-rata line is an amount.
_SUB_UNIT_AMOUNT = round_sql("unit_price / months", UNIT_AMOUNT_DECIMAL_PLACES)
_SUB_AMOUNT = round_sql("unit_price / months * quantity * active_days / %(days)s", "scale")
_SUB_TAX = tax_amount_sql(_SUB_AMOUNT, "tax_rate", "scale")
_CHARGE_AMOUNT = line_amount_sql("ch.quantity", "ch.unit_amount", "cur.scale")
_CHARGE_TAX = tax_amount_sql(_CHARGE_AMOUNT, "ch.tax_rate", "cur.scale")

_DRAFT_SQL = f"""
DROP TABLE IF EXISTS batch_lines, batch_invoices, batch_items;

CREATE TEMP TABLE batch_lines (
    line_no bigserial, customer_id bigint, subscription_id bigint, charge_id bigint, description text,
    quantity numeric, unit_amount numeric, amount numeric, tax_rate numeric, tax_amount numeric,
    currency varchar(3), details jsonb, sort_at timestamptz
) ON COMMIT DROP;

WITH cur(code, scale) AS (VALUES {{scales}}),
live AS (  -- customers that already have a live invoice of this batch and period
    SELECT customer_id FROM invoicing_invoice
    WHERE tenant_id = %(tenant)s AND batch_id = %(batch)s AND period_start = %(ps)s AND period_end = %(pe)s
      AND status <> 'cancelled'
),
subs AS (
    SELECT s.*, c.currency AS customer_currency, cur.scale,
           (least(%(pe)s::date, coalesce((s.cancelled_at AT TIME ZONE %(tz)s)::date - 1, %(pe)s::date))
            - greatest(%(ps)s::date, s.started_on) + 1) AS active_days,
           CASE s.billing_cadence WHEN 'quarterly' THEN 3 WHEN 'yearly' THEN 12 ELSE 1 END AS months
    FROM billing_subscription s
    JOIN billing_customer c ON c.id = s.customer_id AND c.is_active
    JOIN cur ON cur.code = c.currency
    WHERE s.tenant_id = %(tenant)s AND s.started_on <= %(pe)s
      AND s.customer_id NOT IN (SELECT customer_id FROM live)
)
INSERT INTO batch_lines (customer_id, subscription_id, description, quantity, unit_amount, amount, tax_rate,
                         tax_amount, currency, details, sort_at)
SELECT customer_id, id, plan_name, quantity, {_SUB_UNIT_AMOUNT},
       {_SUB_AMOUNT},
       tax_rate,
       {_SUB_TAX},
       currency,
       jsonb_build_object('activeDays', active_days, 'periodDays', %(days)s, 'cadence', billing_cadence),
       '-infinity'::timestamptz
FROM subs WHERE active_days > 0;

WITH cur(code, scale) AS (VALUES {{scales}}),
live AS (
    SELECT customer_id FROM invoicing_invoice
    WHERE tenant_id = %(tenant)s AND batch_id = %(batch)s AND period_start = %(ps)s AND period_end = %(pe)s
      AND status <> 'cancelled'
)
INSERT INTO batch_lines (customer_id, subscription_id, charge_id, description, quantity, unit_amount, amount,
                         tax_rate, tax_amount, currency, details, sort_at)
SELECT ch.customer_id, ch.subscription_id, ch.id, ch.description, ch.quantity, ch.unit_amount,
       {_CHARGE_AMOUNT}, ch.tax_rate,
       {_CHARGE_TAX},
       ch.currency, ch.details, ch.occurred_at
FROM billing_charge ch
JOIN billing_customer c ON c.id = ch.customer_id AND c.is_active
JOIN cur ON cur.code = c.currency
WHERE ch.tenant_id = %(tenant)s AND ch.invoice_id IS NULL AND ch.occurred_at < %(period_end_at)s
  AND ch.customer_id NOT IN (SELECT customer_id FROM live);

ANALYZE batch_lines;

CREATE TEMP TABLE batch_invoices ON COMMIT DROP AS
WITH inserted AS (
    INSERT INTO invoicing_invoice (tenant_id, customer_id, currency, status, period_start, period_end, subtotal,
        tax_total, total, amount_paid, amount_credited, balance, memo, send_error, batch_id, batch_run_id,
        created_at, updated_at)
    SELECT %(tenant)s, l.customer_id, c.currency, 'draft', %(ps)s, %(pe)s, sum(l.amount), sum(l.tax_amount),
           sum(l.amount) + sum(l.tax_amount), 0, 0, sum(l.amount) + sum(l.tax_amount), '', '', %(batch)s, %(run)s,
           now(), now()
    FROM batch_lines l JOIN billing_customer c ON c.id = l.customer_id
    GROUP BY l.customer_id, c.currency
    ON CONFLICT (customer_id, batch_id, period_start, period_end) WHERE batch_id IS NOT NULL AND status <> 'cancelled'
    DO NOTHING
    RETURNING id, customer_id
)
SELECT * FROM inserted;

ANALYZE batch_invoices;

CREATE TEMP TABLE batch_items ON COMMIT DROP AS
SELECT l.*, b.id AS invoice_id, nextval('invoicing_invoiceitem_id_seq') AS item_id,
       row_number() OVER (PARTITION BY b.id ORDER BY l.sort_at, l.line_no) - 1 AS position
FROM batch_lines l JOIN batch_invoices b ON b.customer_id = l.customer_id;

INSERT INTO invoicing_invoiceitem (id, tenant_id, invoice_id, charge_id, subscription_id, position, description,
    quantity, unit_amount, amount, tax_rate, available_to_credit_amount, details)
SELECT item_id, %(tenant)s, invoice_id, charge_id, subscription_id, position, left(description, 500), quantity,
       unit_amount, amount, tax_rate, amount, details
FROM batch_items;

INSERT INTO invoicing_taxitem (tenant_id, invoice_id, invoice_item_id, name, rate, taxable_amount, amount,
    available_to_credit_amount)
SELECT %(tenant)s, invoice_id, item_id, 'VAT', tax_rate, amount, tax_amount, tax_amount
FROM batch_items WHERE tax_rate > 0;

UPDATE billing_charge ch SET invoice_id = i.invoice_id
FROM batch_items i WHERE i.charge_id = ch.id;
"""  # noqa: S608 - assembled from constant SQL builders, never from input


@dataclass(frozen=True, slots=True)
class BatchSummary:
    invoice_count: int
    totals_by_currency: dict[str, str]

    def as_context(self) -> dict:
        return {"invoiceCount": self.invoice_count, "totalsByCurrency": self.totals_by_currency}


def batch_summary(*, run_pk: int) -> BatchSummary:
    """Count and totals per currency of the invoices a run drafted (summed in the database)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT currency, count(*), sum(total) FROM invoicing_invoice "
            "WHERE batch_run_id = %s AND status <> 'cancelled' GROUP BY currency ORDER BY currency",
            [run_pk],
        )
        rows = cursor.fetchall()
    return BatchSummary(
        invoice_count=sum(r[1] for r in rows),
        totals_by_currency={r[0]: str(Decimal(r[2]).quantize(get_currency(r[0]).quantum)) for r in rows},
    )


def batch_draft(*, tenant: Tenant, batch_id: str, run_pk: int, period: BillingPeriod, actor: Actor) -> BatchSummary:
    """One draft invoice per active customer with something to bill in `period`: subscriptions pro
    rata to their active days, plus unbilled charges up to the period's end, with tax items.

    Idempotent per customer and period: a customer with a live invoice of this batch and period
    gets no second one, and each charge is billed once (an invoice item's charge is unique, so a
    concurrent batch claiming the same charge fails and retries rather than billing it twice).
    """
    zone = business_zone()
    period_end_at = datetime.combine(period.end + timedelta(days=1), time.min, tzinfo=zone)
    params = {
        "tenant": tenant.pk,
        "batch": batch_id,
        "run": run_pk,
        "ps": period.start,
        "pe": period.end,
        "days": period.days,
        "tz": str(zone),
        "period_end_at": period_end_at,
    }
    sql = _DRAFT_SQL.replace("{scales}", _currency_scales(tenant.pk))
    with audited(actor=actor, reason=f"monthly batch {batch_id} drafted {period.start}..{period.end}"):
        with connection.cursor() as cursor:
            for statement in (s.strip() for s in sql.split(";\n")):
                if statement:
                    cursor.execute(statement, params)
    summary = batch_summary(run_pk=run_pk)
    log.info("batch.drafted", tenant=tenant.pk, run=run_pk, invoices=summary.invoice_count)
    return summary


_ISSUE_QUERIES = {
    "no_email": (
        "SELECT i.id, c.id, c.name, 'customer has no email address' FROM invoicing_invoice i "
        "JOIN billing_customer c ON c.id = i.customer_id WHERE i.batch_run_id = %s AND i.status = 'draft' AND c.email = ''"
    ),
    "non_positive_total": (
        "SELECT i.id, c.id, c.name, 'total is ' || i.total::text FROM invoicing_invoice i "
        "JOIN billing_customer c ON c.id = i.customer_id WHERE i.batch_run_id = %s AND i.status = 'draft' AND i.total <= 0"
    ),
    "currency_mismatch": (
        "SELECT DISTINCT ON (i.id) i.id, c.id, c.name, 'a line is in ' || coalesce(ch.currency, s.currency) || "
        "' but the invoice is in ' || i.currency FROM invoicing_invoice i "
        "JOIN billing_customer c ON c.id = i.customer_id "
        "JOIN invoicing_invoiceitem it ON it.invoice_id = i.id "
        "LEFT JOIN billing_charge ch ON ch.id = it.charge_id "
        "LEFT JOIN billing_subscription s ON s.id = it.subscription_id AND it.charge_id IS NULL "
        "WHERE i.batch_run_id = %s AND i.status = 'draft' "
        "AND (coalesce(ch.currency, s.currency) <> i.currency OR i.currency <> c.currency)"
    ),
    "missing_tax_rate": (
        "SELECT DISTINCT ON (i.id) i.id, c.id, c.name, 'line ' || it.description || ' has no tax rate' "
        "FROM invoicing_invoice i JOIN billing_customer c ON c.id = i.customer_id "
        "JOIN invoicing_invoiceitem it ON it.invoice_id = i.id "
        "WHERE i.batch_run_id = %s AND i.status = 'draft' AND it.tax_rate IS NULL"
    ),
}


def batch_validate(*, run_pk: int) -> dict:
    """Blocking findings on a run's drafts: {ok, issueCount, countsByKind, issues[:MAX_ISSUES_SHOWN]}."""
    issues, counts = [], {}
    with connection.cursor() as cursor:
        for kind, sql in _ISSUE_QUERIES.items():
            cursor.execute(sql, [run_pk])
            rows = cursor.fetchall()
            if rows:
                counts[kind] = len(rows)
            for invoice_id, customer_id, name, detail in rows[: max(MAX_ISSUES_SHOWN - len(issues), 0)]:
                issues.append({"kind": kind, "invoiceId": invoice_id, "customerId": customer_id, "customer": name, "detail": detail})
    return {"ok": not counts, "issueCount": sum(counts.values()), "countsByKind": counts, "issues": issues}


def batch_cancel_drafts(*, run_pk: int, actor: Actor, reason: str) -> int:
    """Cancel a run's drafts and give their charges back for the next run. Returns how many."""
    from invoicing.services import invoices_release_charges

    now = timezone.now()
    with audited(actor=actor, reason=reason):
        drafts = Invoice.objects.filter(batch_run_id=run_pk, status=InvoiceStatus.DRAFT)
        ids = list(drafts.values_list("id", flat=True))
        invoices_release_charges(invoice_ids=ids, released_at=now)
        return Invoice.objects.filter(pk__in=ids, status=InvoiceStatus.DRAFT).update(
            status=InvoiceStatus.CANCELLED, cancelled_at=now, updated_at=now
        )


# The set-based numbering writes the one invoice number format (invoicing.rules).
_BATCH_NUMBER = invoice_number_sql("%(prefix)s", "%(year)s", "block.base + d.n")


def batch_issue(*, tenant: Tenant, run_pk: int, issue_date: date, actor: Actor) -> int:
    """draft → payment_due for every draft of the run, numbered in one block from the tenant's
    gapless counter (locked until commit), due after the tenant's payment terms."""
    due_date = payment_due_date(issue_date, tenant.payment_terms_days)
    with audited(actor=actor, reason="monthly batch approved and issued"), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO invoicing_invoicenumbersequence (tenant_id, year, last_value) VALUES (%s, %s, 0) "
            "ON CONFLICT (tenant_id, year) DO NOTHING",
            [tenant.pk, issue_date.year],
        )
        cursor.execute(
            f"""
            WITH locked AS (
                SELECT id FROM invoicing_invoice WHERE batch_run_id = %(run)s AND status = 'draft' FOR UPDATE
            ),
            drafts AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM locked),
            block AS (
                UPDATE invoicing_invoicenumbersequence SET last_value = last_value + (SELECT count(*) FROM drafts)
                WHERE tenant_id = %(tenant)s AND year = %(year)s
                RETURNING last_value - (SELECT count(*) FROM drafts) AS base
            )
            UPDATE invoicing_invoice i
            SET number = {_BATCH_NUMBER},
                status = 'payment_due', issue_date = %(issue)s, due_date = %(due)s, updated_at = now()
            FROM drafts d, block WHERE i.id = d.id
            """,  # noqa: S608 - constant SQL
            {"run": run_pk, "tenant": tenant.pk, "year": issue_date.year, "prefix": tenant.invoice_number_prefix,
             "issue": issue_date, "due": due_date},
        )
        return cursor.rowcount


_SENT_FIELD = {INVOICE: "sent_at", REMINDER: "reminder_sent_at", FINAL_NOTICE: "final_notice_sent_at"}
# Where a failed send of each kind is recorded, with its reason (a failed row is not retried by the step).
_ERROR_FIELD = {INVOICE: "send_error", REMINDER: "reminder_error", FINAL_NOTICE: "final_notice_error"}
# How long a send step waits for invoices another transaction holds (a second worker mid-send)
# before it fails instead of reporting a partial send as done.
CLAIM_WAIT_SECONDS = 120
CLAIM_RETRY_SECONDS = 0.2


def _due(run_pk: int, kind: str):
    """The run's invoices still due this kind of message: not sent, not recorded as failed."""
    queryset = Invoice.objects.filter(
        batch_run_id=run_pk, status__in=OPEN_STATUSES, **{f"{_SENT_FIELD[kind]}__isnull": True, _ERROR_FIELD[kind]: ""}
    )
    if kind != INVOICE:
        # chasers go only to invoices still unpaid, and a final notice only after a reminder
        queryset = queryset.filter(balance__gt=0, sent_at__isnull=False)
        if kind == FINAL_NOTICE:
            queryset = queryset.filter(reminder_sent_at__isnull=False)
    return queryset


def _claim_next(run_pk: int, kind: str) -> Invoice | None:
    # of=("self",): lock the invoice row only. Without it the joined tenant and customer rows are
    # locked too, and SKIP LOCKED skips every invoice whose tenant row anyone holds (a schedule tick).
    return (
        _due(run_pk, kind)
        .select_for_update(skip_locked=True, of=("self",))
        .select_related("customer", "tenant")
        .order_by("id")
        .first()
    )


class SendIncomplete(Conflict):
    """Invoices are still due but another transaction holds them past CLAIM_WAIT_SECONDS."""

    code = "send-incomplete"
    title = "Send step incomplete"


def _send_one(invoice: Invoice, *, kind: str, sent_field: str, error_field: str) -> None:
    """Send one claimed invoice's message and stamp it, or record why it failed."""
    try:
        if not invoice.customer.email:
            raise ValueError("customer has no email address")
        send_invoice_document(invoice, kind)
    except Exception as exc:  # noqa: BLE001 - one failed email never stops the batch
        log.warning("invoice_send.failed", invoice=invoice.pk, run=invoice.batch_run_id, kind=kind, error=str(exc))
        setattr(invoice, error_field, (str(exc) or type(exc).__name__)[:500])
        invoice.save(update_fields=[error_field, "updated_at"])
        return
    setattr(invoice, sent_field, timezone.now())
    invoice.save(update_fields=[sent_field, "updated_at"])


@dataclass(frozen=True, slots=True)
class SendResult:
    sent: int
    failed: int


def batch_send(*, run_pk: int, kind: str, actor: Actor) -> SendResult:
    """Email every invoice of the run due this `kind` of message, once each; the step ends only
    when a count finds none left (each one sent or its failure recorded with the reason).

    One invoice per transaction: claim it (SKIP LOCKED), send, stamp — a crash loses at most the
    one in flight, which is sent again with the same Message-ID. The counts returned are the rows'.
    """
    sent_field, error_field = _SENT_FIELD[kind], _ERROR_FIELD[kind]
    waiting_since: float | None = None
    while True:
        with audited(actor=actor, reason=f"batch {kind} sent"):
            invoice = _claim_next(run_pk, kind)
            if invoice is not None:
                _send_one(invoice, kind=kind, sent_field=sent_field, error_field=error_field)
            else:
                left = _due(run_pk, kind).count()
        if invoice is not None:
            waiting_since = None
            continue
        if not left:
            break
        # What is left is held by another transaction (a second worker sending it): wait for it
        # to commit, but do not report a send step done while invoices are still due.
        waiting_since = waiting_since or monotonic()
        if monotonic() - waiting_since > CLAIM_WAIT_SECONDS:
            raise SendIncomplete(
                f"{left} invoice(s) due a {kind} stayed locked by another transaction for {CLAIM_WAIT_SECONDS}s "
                "(another worker or a long transaction on the invoices); the step is retried, and a run that "
                "keeps failing here needs that transaction found and ended"
            )
        sleep(CLAIM_RETRY_SECONDS)
    invoices = Invoice.objects.filter(batch_run_id=run_pk)
    return SendResult(
        sent=invoices.filter(**{f"{sent_field}__isnull": False}).count(),
        failed=invoices.exclude(**{error_field: ""}).count(),
    )


def batch_latest_due_date(*, run_pk: int) -> date | None:
    latest = Invoice.objects.filter(batch_run_id=run_pk).exclude(due_date=None).order_by("-due_date").first()
    return latest.due_date if latest else None

