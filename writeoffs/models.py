"""Daily write-off: where each tenant's adjustments go, and one row per proposed invoice per day."""

from django.db import models
from django.db.models import Q

from billing.lifecycle import CancellationSource
from core.fields import amount_field, currency_field


class Provider(models.TextChoices):
    LOCAL = "local"  # Ledgerflow's own invoices, items and tax items
    ZUORA = "zuora"  # the tenant's invoices live in Zuora


class WriteOffSettings(models.Model):
    """Per tenant: which ledger the write-offs go to, and who hears about failures."""

    tenant = models.OneToOneField("tenancy.Tenant", on_delete=models.CASCADE, related_name="writeoff_settings")
    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.LOCAL)
    zuora_base_url = models.URLField(blank=True)
    zuora_client_id = models.CharField(max_length=200, blank=True)
    # Never shown back: the admin form takes a new value or keeps the stored one.
    zuora_client_secret = models.CharField(max_length=500, blank=True)
    # The ReasonCode Zuora records on each adjustment (must exist in the tenant's Zuora settings).
    reason_code = models.CharField(max_length=100, default="Write-off")
    # Comma-separated addresses told when a run could not write an invoice off.
    finance_emails = models.TextField(blank=True)
    webhook_url = models.URLField(blank=True)
    # HMAC-SHA256 key of the outgoing webhook's signature; never shown back.
    webhook_secret = models.CharField(max_length=200, blank=True)
    # When a secret (Zuora client secret, webhook secret) last changed: audited, the values never are.
    secrets_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "write-off settings"

    def __str__(self) -> str:
        return f"write-offs via {self.provider}"

    @property
    def finance_email_list(self) -> list[str]:
        return [e.strip() for e in self.finance_emails.replace(";", ",").split(",") if e.strip()]


class CandidateStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # balance already zero when its turn came, or the run was rejected


class WriteOffCandidate(models.Model):
    """An invoice proposed for write-off by one run; the run is complete when none is pending."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey("journeys.JourneyRun", on_delete=models.PROTECT, related_name="writeoff_candidates")
    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, related_name="writeoff_candidates")
    subscription = models.ForeignKey("billing.Subscription", on_delete=models.PROTECT, related_name="+")
    business_date = models.DateField()
    currency = currency_field()
    # The balance when proposed: what the approver saw.
    balance = amount_field()
    source = models.CharField(max_length=16, choices=CancellationSource.choices)
    status = models.CharField(max_length=16, choices=CandidateStatus.choices, default=CandidateStatus.PENDING)
    # Net amount taken off the balance (negative for a negative balance charged back to zero).
    written_off_amount = amount_field(default=0)
    adjustments = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    # When a chunk task was last enqueued for it: a pending row dispatched long ago is re-enqueued.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "business_date"], name="writeoff_candidate_once_per_day"),
            models.CheckConstraint(condition=~Q(balance=0), name="writeoff_candidate_balance_non_zero"),
        ]
        indexes = [models.Index(fields=["run", "status"], name="writeoff_candidate_run_idx")]

    def __str__(self) -> str:
        return f"{self.invoice_id} on {self.business_date}: {self.status}"


class WriteOffReport(models.Model):
    """What a finished run could not write off, as a CSV for download; notified once."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="+")
    run = models.OneToOneField("journeys.JourneyRun", on_delete=models.PROTECT, related_name="writeoff_report")
    failed_count = models.PositiveIntegerField(default=0)
    csv = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    webhook_delivered_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"report of run {self.run_id}: {self.failed_count} failed"
