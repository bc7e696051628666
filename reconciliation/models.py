"""Bank accounts, imported statements and their entries, and the reconciliations linking an
invoice to its payment and bank entry."""

from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from core.fields import amount_field, currency_field


class BankEntryKind(models.TextChoices):
    TRANSFER = "transfer"
    # The bank took back an earlier booking (CAMT RvslInd, MT940 RC/RD): never a customer's payment.
    REVERSAL = "reversal"
    # A payment that came back (CAMT return information or sub-family RRTN, Dutch RTRN, German GVC 109/159).
    RETURN = "return"


class BankEntryStatus(models.TextChoices):
    # Booked by the bank but not yet cleared (CAMT "PDNG", a CSV "pending" column).
    PENDING = "pending"
    CLEARED = "cleared"


class MatchStatus(models.TextChoices):
    UNMATCHED = "unmatched"
    RECONCILED = "reconciled"
    DISCREPANCY = "discrepancy"


class ReconciliationStatus(models.TextChoices):
    RECONCILED = "reconciled"
    DISCREPANCY = "discrepancy"
    # An operator resolved a discrepancy (by matching by hand or accepting it).
    RESOLVED = "resolved"
    # Undone by an operator (unmatch) or superseded (a pending bank entry cleared).
    REVERSED = "reversed"


# Active records hold their bank entry and payment; reversed and resolved ones released them.
ACTIVE_STATUSES = (ReconciliationStatus.RECONCILED, ReconciliationStatus.DISCREPANCY)


class DiscrepancyKind(models.TextChoices):
    AMOUNT_MISMATCH = "amount_mismatch"
    MISSING_PAYMENT = "missing_payment"
    MISSING_BANK_ENTRY = "missing_bank_entry"
    DUPLICATE = "duplicate"
    TIMING_DIFFERENCE = "timing_difference"
    # The invoice is paid; the excess is for an operator to refund or apply elsewhere.
    OVERPAYMENT = "overpayment"
    # The engine could not apply a match (the note says why); the entry waits for an operator
    # instead of blocking every later run of the tenant.
    MATCH_FAILED = "match_failed"
    # The invoice is on an issued consolidated invoice: the money is applied by settling that one
    # (consolidated_invoice_settle), never onto the source directly.
    CONSOLIDATED_SOURCE = "consolidated_source"
    # A reversal or returned payment: the bank took money back or a payment came back; the note
    # names the entry it reverses when one is known. Never matched to an invoice automatically.
    REVERSAL = "reversal"


class MatchRule(models.TextChoices):
    # The ISO 11649 reference (RF…) printed on the invoice, quoted by the payer.
    CREDITOR_REFERENCE = "creditor_reference"
    PAYMENT_REFERENCE = "payment_reference"
    INVOICE_NUMBER = "invoice_number"
    MULTI_INVOICE = "multi_invoice"
    CUSTOMER_OPEN_SUM = "customer_open_sum"
    # No reference at all: the payer's name is a customer's with exactly one open invoice of that amount.
    AMOUNT_COUNTERPARTY = "amount_counterparty"
    MANUAL = "manual"


# The automatic rules in their default order (manual is an operator's, never automatic).
DEFAULT_RULES = [
    MatchRule.CREDITOR_REFERENCE,
    MatchRule.PAYMENT_REFERENCE,
    MatchRule.INVOICE_NUMBER,
    MatchRule.MULTI_INVOICE,
    MatchRule.CUSTOMER_OPEN_SUM,
    MatchRule.AMOUNT_COUNTERPARTY,
]


def _default_rules():
    return [str(rule) for rule in DEFAULT_RULES]


class ReconciliationSettings(models.Model):
    """How a tenant's matching runs: which rules, in which order, and how close is equal."""

    tenant = models.OneToOneField("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    rules = ArrayField(models.CharField(max_length=32), default=_default_rules)
    # Bank fees and rounding, per currency ({"EUR": "1.00", "JPY": "100"}, amounts as strings so they
    # stay exact): an amount within this of the expected one counts as equal. A currency not listed
    # has tolerance 0. Written only by services.settings_update, which checks each amount.
    amount_tolerances = models.JSONField(default=dict, blank=True)
    # A completed payment with no bank credit after this many days is a missing-bank-entry discrepancy.
    bank_entry_grace_days = models.PositiveSmallIntegerField(default=5)

    class Meta:
        verbose_name_plural = "reconciliation settings"

    def __str__(self) -> str:
        return f"settings of tenant {self.tenant_id}"

    def tolerance_for(self, currency: str) -> Decimal:
        """The tolerance of `currency`; 0 for a currency not listed."""
        return Decimal(str(self.amount_tolerances.get(currency, "0")))


class BankAccount(models.Model):
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="bank_accounts")
    name = models.CharField(max_length=200)
    iban = models.CharField(max_length=34)
    bic = models.CharField(max_length=11, blank=True)
    currency = currency_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "iban"], name="bank_account_unique_iban")]

    def __str__(self) -> str:
        return f"{self.name} ({self.iban})"


class CsvProfile(models.Model):
    """How one bank's CSV export reads: the header name of each column we need."""

    bank_account = models.OneToOneField(BankAccount, on_delete=models.CASCADE, related_name="csv_profile")
    delimiter = models.CharField(max_length=1, default=",")
    # strptime format of the date columns, e.g. %d.%m.%Y for German banks.
    date_format = models.CharField(max_length=32, default="%Y-%m-%d")
    # "," for banks writing 1.234,56; the other separator is then a thousands separator.
    decimal_separator = models.CharField(max_length=1, default=".")
    booking_date_column = models.CharField(max_length=100)
    value_date_column = models.CharField(max_length=100, blank=True)
    amount_column = models.CharField(max_length=100)
    currency_column = models.CharField(max_length=100, blank=True)
    transaction_id_column = models.CharField(max_length=100, blank=True)
    counterparty_name_column = models.CharField(max_length=100, blank=True)
    counterparty_iban_column = models.CharField(max_length=100, blank=True)
    reference_column = models.CharField(max_length=100, blank=True)
    remittance_column = models.CharField(max_length=100, blank=True)
    # A column whose value says the entry is not cleared yet; blank means every row is cleared.
    status_column = models.CharField(max_length=100, blank=True)
    pending_value = models.CharField(max_length=50, blank=True, default="pending")

    def __str__(self) -> str:
        return f"CSV profile of {self.bank_account}"


class StatementFormat(models.TextChoices):
    CAMT052 = "camt052", "CAMT.052"
    CAMT053 = "camt053", "CAMT.053"
    CAMT054 = "camt054", "CAMT.054"
    MT940 = "mt940", "MT940"
    CSV = "csv", "CSV"


class BankStatement(models.Model):
    """One import of a statement file. Re-importing creates another record, never another entry."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="bank_statements")
    bank_account = models.ForeignKey(BankAccount, on_delete=models.PROTECT, related_name="statements")
    format = models.CharField(max_length=8, choices=StatementFormat.choices)
    # The bank's statement id (CAMT Stmt/Id, MT940 :20:), blank for CSV.
    statement_ref = models.CharField(max_length=100, blank=True)
    file_name = models.CharField(max_length=255, blank=True)
    file_sha256 = models.CharField(max_length=64)
    entry_count = models.PositiveIntegerField(default=0)
    # Entries this import added; the rest were already known from an earlier (overlapping) import.
    new_entry_count = models.PositiveIntegerField(default=0)
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_format_display()} {self.statement_ref or self.file_name}"


class BankEntry(models.Model):
    """One line of a bank statement. Credits are positive."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="bank_entries")
    bank_account = models.ForeignKey(BankAccount, on_delete=models.PROTECT, related_name="entries")
    statement = models.ForeignKey(BankStatement, on_delete=models.PROTECT, related_name="entries")
    booking_date = models.DateField()
    value_date = models.DateField(null=True, blank=True)
    amount = amount_field()
    currency = currency_field()
    bank_transaction_id = models.CharField(max_length=100, blank=True)
    counterparty_name = models.CharField(max_length=200, blank=True)
    counterparty_iban = models.CharField(max_length=34, blank=True)
    # Structured reference: CAMT EndToEndId or creditor reference; where a rail puts its id.
    reference = models.CharField(max_length=200, blank=True)
    remittance_text = models.TextField(blank=True)
    # The payer's end-to-end id (CAMT EndToEndId, MT940 EREF), NOTPROVIDED left blank.
    end_to_end_id = models.CharField(max_length=200, blank=True)
    # ISO 11649 creditor reference (RF…, compact) the payer quoted; matching tries it first.
    creditor_reference = models.CharField(max_length=25, blank=True)
    kind = models.CharField(max_length=8, choices=BankEntryKind.choices, default=BankEntryKind.TRANSFER)
    status = models.CharField(max_length=8, choices=BankEntryStatus.choices, default=BankEntryStatus.CLEARED)
    match_status = models.CharField(max_length=16, choices=MatchStatus.choices, default=MatchStatus.UNMATCHED)
    # False once an operator unmatched it: the engine leaves it to operators from then on.
    auto_match = models.BooleanField(default=True)
    # "id:<bank transaction id>" or "fp:<hash of the entry's facts and its occurrence>": how a
    # re-import or an overlapping statement recognises an entry it already has.
    dedup_key = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-booking_date", "-id"]
        verbose_name_plural = "bank entries"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "bank_account", "dedup_key"], name="bank_entry_unique_dedup"
            ),
        ]
        indexes = [
            models.Index(
                fields=["tenant", "match_status"],
                name="bank_entry_unmatched_idx",
                condition=Q(match_status="unmatched"),
            ),
            models.Index(fields=["tenant", "booking_date"], name="bank_entry_booking_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.booking_date} {self.amount} {self.currency} {self.reference}"


class Reconciliation(models.Model):
    """One allocation: (part of) a bank entry, through a payment, to an invoice — or a discrepancy.

    Many-to-one (one entry paying several invoices) is several rows sharing the bank entry;
    one-to-many (several payments for an invoice) is several rows sharing the invoice.
    """

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="reconciliations")
    invoice = models.ForeignKey(
        "invoicing.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="reconciliations"
    )
    payment = models.ForeignKey(
        "billing.Payment", on_delete=models.PROTECT, null=True, blank=True, related_name="reconciliations"
    )
    bank_entry = models.ForeignKey(
        BankEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="reconciliations"
    )
    status = models.CharField(max_length=16, choices=ReconciliationStatus.choices)
    discrepancy_kind = models.CharField(max_length=24, choices=DiscrepancyKind.choices, blank=True)
    rule = models.CharField(max_length=24, choices=MatchRule.choices)
    # What this row applied to the invoice (zero for a discrepancy, which applies nothing).
    amount = amount_field(default=0)
    currency = currency_field()
    # Expected minus received where they differ (the mismatch, the overpayment, the tolerance used).
    difference = amount_field(default=0)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status=ReconciliationStatus.DISCREPANCY, discrepancy_kind__gt="")
                | ~Q(status=ReconciliationStatus.DISCREPANCY),
                name="recon_discrepancy_has_kind",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="recon_amount_non_negative"),
        ]
        indexes = [
            models.Index(fields=["tenant", "status"], name="recon_status_idx"),
            models.Index(
                fields=["payment"], name="recon_active_payment_idx", condition=Q(status__in=ACTIVE_STATUSES)
            ),
            models.Index(
                fields=["bank_entry"], name="recon_active_entry_idx", condition=Q(status__in=ACTIVE_STATUSES)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.status} {self.discrepancy_kind} #{self.pk}"


class UnmatchedBankEntry(BankEntry):
    """The operator's queue in the admin: bank credits no rule could match."""

    class Meta:
        proxy = True
        verbose_name = "unmatched bank entry"
        verbose_name_plural = "unmatched bank entries"
