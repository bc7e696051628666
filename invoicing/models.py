import re

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.functions import Upper
from stdnum.iso7064 import mod_97_10

from core.fields import amount_field, currency_field, rate_field, unit_amount_field
from invoicing.lifecycle import OPEN_STATUSES, AdjustmentType, InvoiceStatus


class Invoice(models.Model):
    """An invoice. Invariant (database-enforced): balance = total − amount_paid − amount_credited."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="invoices")
    customer = models.ForeignKey("billing.Customer", on_delete=models.PROTECT, related_name="invoices")
    # Allocated when the invoice is issued, gapless per tenant and year; drafts have none.
    number = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001 - unique, so drafts hold NULL
    currency = currency_field()
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    issue_date = models.DateField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    subtotal = amount_field(default=0)
    tax_total = amount_field(default=0)
    total = amount_field(default=0)
    amount_paid = amount_field(default=0)
    # Net of adjustments: credits add, charges subtract, so it may be negative.
    amount_credited = amount_field(default=0)
    balance = amount_field(default=0)
    memo = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Why the last email of this invoice failed; empty when it did not.
    send_error = models.CharField(max_length=500, blank=True, default="", db_default="")
    reminder_sent_at = models.DateTimeField(null=True, blank=True)
    # Why the batch's reminder / final notice of this invoice failed; empty when it did not.
    reminder_error = models.CharField(max_length=500, blank=True, default="", db_default="")
    final_notice_sent_at = models.DateTimeField(null=True, blank=True)
    final_notice_error = models.CharField(max_length=500, blank=True, default="", db_default="")
    # The monthly batch (its batchId and the journey run) that drafted this invoice, if any.
    batch_id = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001 - part of a partial unique key
    batch_run = models.ForeignKey(
        "journeys.JourneyRun", on_delete=models.PROTECT, null=True, blank=True, related_name="invoices"
    )
    paid_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    written_off_at = models.DateTimeField(null=True, blank=True)
    # Set when a consolidated invoice carrying this one is issued (a plain id: invoicing does not
    # depend on consolidation). From then on the invoice changes only through that consolidated
    # invoice: cancelling, adjusting or settling it directly is refused.
    consolidated_into_id = models.BigIntegerField(null=True, blank=True)
    consolidated_into_number = models.CharField(max_length=40, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="invoice_unique_number_per_tenant"),
            # One live batch invoice per customer, batch and period: a re-run drafts nothing twice.
            models.UniqueConstraint(
                fields=["customer", "batch_id", "period_start", "period_end"],
                condition=Q(batch_id__isnull=False) & ~Q(status="cancelled"),
                name="invoice_unique_batch_period",
            ),
            models.CheckConstraint(condition=Q(subtotal__gte=0), name="invoice_subtotal_non_negative"),
            models.CheckConstraint(condition=Q(tax_total__gte=0), name="invoice_tax_total_non_negative"),
            models.CheckConstraint(
                condition=Q(total=F("subtotal") + F("tax_total")), name="invoice_total_is_sum"
            ),
            models.CheckConstraint(condition=Q(amount_paid__gte=0), name="invoice_amount_paid_non_negative"),
            models.CheckConstraint(
                condition=Q(balance=F("total") - F("amount_paid") - F("amount_credited")),
                name="invoice_balance_equation",
            ),
            # An open invoice never owes the customer money: a credit stops at what is unpaid.
            models.CheckConstraint(
                condition=Q(balance__gte=0) | ~Q(status__in=OPEN_STATUSES),
                name="invoice_open_balance_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(status=InvoiceStatus.DRAFT)
                | Q(status=InvoiceStatus.CANCELLED)
                | Q(number__isnull=False),
                name="invoice_issued_has_number",
            ),
            models.CheckConstraint(
                condition=Q(period_start__isnull=True)
                | Q(period_end__isnull=True)
                | Q(period_end__gte=F("period_start")),
                name="invoice_period_ordered",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "due_date"], name="invoice_status_due_idx"),
            models.Index(fields=["tenant", "customer", "period_start"], name="invoice_customer_period_idx"),
            models.Index(fields=["batch_run", "status"], name="invoice_batch_run_idx"),
            # Bank entries quoting a creditor reference find their invoice through this.
            models.Index(
                F("tenant"),
                Upper(
                    Func(F("number"), Value("[^A-Za-z0-9]"), Value(""), Value("g"), function="regexp_replace")
                ),
                name="invoice_creditor_ref_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"draft #{self.pk}"

    @property
    def creditor_reference(self) -> str:
        """The ISO 11649 reference (RF…) customers are asked to quote; blank for a draft."""
        return creditor_reference(self.number)


def creditor_reference(number: str | None) -> str:
    """RF, two check digits and the invoice number's letters and digits (ISO 11649 allows 21):
    INV-2026-000001 → RF94INV2026000001. Matching compares the part after the check digits with
    the same normalisation of the number in SQL (reconciliation's matching, invoice_creditor_ref_idx)."""
    body = re.sub(r"[^A-Za-z0-9]", "", number or "").upper()
    if not 0 < len(body) <= 21:
        return ""
    return f"RF{mod_97_10.calc_check_digits(body + 'RF')}{body}"


class InvoiceItem(models.Model):
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="items")
    # The charge this line bills. Kept when the invoice is cancelled (the cancelled invoice still
    # shows what it carried), so a charge may sit on several items, but on one live item at most.
    charge = models.ForeignKey(
        "billing.Charge", on_delete=models.PROTECT, null=True, blank=True, related_name="invoice_items"
    )
    # When the invoice was cancelled and this line's charge given back to be billed again; null
    # while the line is live.
    released_at = models.DateTimeField(null=True, blank=True)
    subscription = models.ForeignKey(
        "billing.Subscription", on_delete=models.PROTECT, null=True, blank=True, related_name="invoice_items"
    )
    position = models.PositiveIntegerField(default=0)
    description = models.CharField(max_length=500)
    quantity = models.DecimalField(max_digits=18, decimal_places=6)
    unit_amount = unit_amount_field()
    amount = amount_field()
    tax_rate = rate_field(null=True, blank=True)
    # What a credit adjustment may still take off this line (amount − credits + charges).
    available_to_credit_amount = amount_field()
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["invoice_id", "position", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="invoice_item_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(available_to_credit_amount__gte=0), name="invoice_item_available_non_negative"
            ),
            # A charge is billed by one live line at most; released lines keep their history.
            models.UniqueConstraint(
                fields=["charge"],
                condition=Q(charge__isnull=False, released_at__isnull=True),
                name="invoice_item_unique_live_charge",
            ),
        ]

    def __str__(self) -> str:
        return self.description


class TaxItem(models.Model):
    """Tax on one invoice item (one rate per item, as Zuora's taxation items)."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="tax_items")
    invoice_item = models.ForeignKey(InvoiceItem, on_delete=models.CASCADE, related_name="tax_items")
    name = models.CharField(max_length=100, default="VAT")
    rate = rate_field()
    taxable_amount = amount_field()
    amount = amount_field()
    available_to_credit_amount = amount_field()

    class Meta:
        ordering = ["invoice_id", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="tax_item_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(available_to_credit_amount__gte=0), name="tax_item_available_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.rate}"


class InvoiceAdjustment(models.Model):
    """A credit (lowers the balance) or charge (raises it) against exactly one item or tax item."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="adjustments")
    invoice_item = models.ForeignKey(
        InvoiceItem, on_delete=models.PROTECT, null=True, blank=True, related_name="adjustments"
    )
    tax_item = models.ForeignKey(
        TaxItem, on_delete=models.PROTECT, null=True, blank=True, related_name="adjustments"
    )
    type = models.CharField(max_length=8, choices=AdjustmentType.choices)
    amount = amount_field()
    reason = models.CharField(max_length=200)
    # Where the adjustment came from: "writeoff", "api", "admin" …
    source = models.CharField(max_length=32)
    # Makes a retried or duplicated adjustment a no-op: one adjustment per key per tenant.
    idempotency_key = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"], name="adjustment_unique_idempotency_key"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="adjustment_amount_positive"),
            models.CheckConstraint(
                condition=(
                    Q(invoice_item__isnull=False, tax_item__isnull=True)
                    | Q(invoice_item__isnull=True, tax_item__isnull=False)
                ),
                name="adjustment_targets_one_line",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.amount}"


class InvoiceNumberSequence(models.Model):
    """The last number issued per tenant and year. Locked by the issuing transaction, so a rollback
    gives the number back: no gaps, no duplicates."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    year = models.PositiveSmallIntegerField()
    last_value = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "year"], name="invoice_sequence_unique_year")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.year}: {self.last_value}"
