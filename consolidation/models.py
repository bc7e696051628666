"""Consolidated invoices: one per customer and billing period, a line per source invoice.

The customer's consolidation settings live here (one-to-one with billing.Customer) so billing's
schema stays untouched.
"""

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q

from consolidation.lifecycle import ConsolidatedStatus, KycStatus, PeriodType
from core.fields import amount_field, currency_field


class ConsolidationSettings(models.Model):
    """A tenant's consolidation settings; a tenant without a row gets the defaults."""

    tenant = models.OneToOneField("tenancy.Tenant", on_delete=models.CASCADE, related_name="consolidation_settings")
    number_prefix = models.CharField(max_length=16, default="CONS")
    # Turning consolidation off mid-period: the open period's invoices still go into one final
    # consolidated invoice at the period's end (True), or stay individual invoices (False).
    final_invoice_on_disable = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "consolidation settings"

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.number_prefix}"


class CustomerBillingPeriod(models.Model):
    """Whether and how a customer's invoices are consolidated."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="+")
    customer = models.OneToOneField("billing.Customer", on_delete=models.CASCADE, related_name="billing_period")
    enabled = models.BooleanField(default=False)
    period_type = models.CharField(max_length=8, choices=PeriodType.choices, default=PeriodType.MONTHLY)
    # 1–7 = Monday–Sunday for weekly; 1–28 = day of month for monthly.
    start_day = models.PositiveSmallIntegerField(default=1)
    kyc_status = models.CharField(max_length=8, choices=KycStatus.choices, default=KycStatus.PENDING)
    # First business date consolidated: invoices issued before opting in stay individual.
    enabled_since = models.DateField(null=True, blank=True)
    # Set when consolidation is turned off mid-period and the tenant wants a final invoice:
    # the open period is consolidated at its end, with the invoices issued up to disabled_on.
    disabled_on = models.DateField(null=True, blank=True)
    final_period_start = models.DateField(null=True, blank=True)
    final_period_end = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer_id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(period_type=PeriodType.WEEKLY, start_day__gte=1, start_day__lte=7)
                | Q(period_type=PeriodType.MONTHLY, start_day__gte=1, start_day__lte=28),
                name="billing_period_start_day_in_range",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "enabled", "period_type", "start_day"], name="billing_period_due_idx"),
            models.Index(fields=["tenant", "final_period_end"], name="billing_period_final_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.period_type}/{self.start_day} {'on' if self.enabled else 'off'}"


class ConsolidatedInvoice(models.Model):
    """One invoice for a customer's billing period. Unique per (customer, period) unless cancelled."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="consolidated_invoices")
    customer = models.ForeignKey("billing.Customer", on_delete=models.PROTECT, related_name="consolidated_invoices")
    # Allocated on issue: CONS-2026-W04-001, gapless per tenant and period; drafts have none.
    number = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001 - unique, so drafts hold NULL
    period_type = models.CharField(max_length=8, choices=PeriodType.choices)
    period_start = models.DateField()
    period_end = models.DateField()
    status = models.CharField(max_length=16, choices=ConsolidatedStatus.choices, default=ConsolidatedStatus.DRAFT)
    # The customer's currency; `total` is the sum of the lines in it. totals_by_currency holds
    # every currency present ({"EUR": "1234.50"}), normally just this one.
    currency = currency_field()
    total = amount_field(default=0)
    totals_by_currency = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    invoice_count = models.PositiveIntegerField(default=0)
    # Aggregates of the source charges' details: distinct FIRs crossed, countries, aircraft.
    firs = models.JSONField(default=list, blank=True)
    countries = models.JSONField(default=list, blank=True)
    aircraft = models.JSONField(default=list, blank=True)
    issue_date = models.DateField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    payment_reference = models.CharField(max_length=200, blank=True)
    # The run that built it (daily or manual): its approval and issue steps act on its drafts.
    journey_run = models.ForeignKey(
        "journeys.JourneyRun", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "period_start", "period_end"],
                condition=~Q(status=ConsolidatedStatus.CANCELLED),
                name="consolidated_unique_customer_period",
            ),
            models.UniqueConstraint(fields=["tenant", "number"], name="consolidated_unique_number"),
            models.CheckConstraint(condition=Q(total__gte=0), name="consolidated_total_non_negative"),
            models.CheckConstraint(condition=Q(period_end__gte=F("period_start")), name="consolidated_period_ordered"),
            models.CheckConstraint(
                condition=Q(status__in=[ConsolidatedStatus.DRAFT, ConsolidatedStatus.CANCELLED])
                | Q(number__isnull=False, issue_date__isnull=False, due_date__isnull=False),
                name="consolidated_issued_has_number",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "due_date"], name="consolidated_status_due_idx"),
            models.Index(fields=["journey_run", "status"], name="consolidated_run_idx"),
        ]

    def __str__(self) -> str:
        return self.number or f"draft consolidation #{self.pk}"


class ConsolidatedInvoiceLine(models.Model):
    """One source invoice in a consolidated invoice. The unique source is the "included" mark:
    the database refuses to consolidate an invoice twice."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="+")
    consolidated_invoice = models.ForeignKey(ConsolidatedInvoice, on_delete=models.CASCADE, related_name="lines")
    source_invoice = models.OneToOneField(
        "invoicing.Invoice", on_delete=models.PROTECT, related_name="consolidation_line"
    )
    invoice_number = models.CharField(max_length=40)
    invoice_date = models.DateField()
    # What the source invoice still owed when it was consolidated (its balance).
    amount = amount_field()
    currency = currency_field()
    # The source invoice's charges' details (aircraft, route, FIRs, countries …), in order.
    details = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["consolidated_invoice_id", "invoice_date", "id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gte=0), name="consolidated_line_amount_non_negative")]

    def __str__(self) -> str:
        return f"{self.invoice_number} {self.amount} {self.currency}"


class ConsolidationNumberSequence(models.Model):
    """The last sequence issued per tenant and period key; locked by the issuing transaction."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    period_key = models.CharField(max_length=16)
    last_value = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "period_key"], name="consolidation_sequence_unique_period")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.period_key}: {self.last_value}"
