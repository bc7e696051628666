from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q

from billing.lifecycle import CancellationSource, PaymentMethod, PaymentStatus, SubscriptionStatus
from core.fields import amount_field, currency_field, rate_field, unit_amount_field
from tenancy.models import Tenant


class Customer(models.Model):
    """A billing account."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="customers")
    # The customer's id in the system that owns it (CRM, booking system); unique per tenant when set.
    external_ref = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    currency = currency_field()
    address_line1 = models.CharField(max_length=200, blank=True)
    address_line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "external_ref"],
                condition=~Q(external_ref=""),
                name="customer_unique_external_ref",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="subscriptions")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")

    class Cadence(models.TextChoices):
        MONTHLY = "monthly"
        QUARTERLY = "quarterly"
        YEARLY = "yearly"

    plan_name = models.CharField(max_length=200)
    unit_price = unit_amount_field()
    quantity = models.DecimalField(max_digits=18, decimal_places=6, default=1)
    currency = currency_field()
    billing_cadence = models.CharField(max_length=16, choices=Cadence.choices, default=Cadence.MONTHLY)
    # Null means nobody said which rate applies: the monthly batch's validation stops on it.
    tax_rate = rate_field(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    # The first day the subscription is billed for (business date).
    started_on = models.DateField()
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # Who cancelled: null while the subscription is active.
    cancellation_source = models.CharField(  # noqa: DJ001 - null means "not cancelled", not an empty source
        max_length=16, choices=CancellationSource.choices, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(unit_price__gte=0), name="subscription_unit_price_non_negative"
            ),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="subscription_quantity_positive"),
            models.CheckConstraint(
                condition=(
                    Q(
                        status=SubscriptionStatus.ACTIVE,
                        cancelled_at__isnull=True,
                        cancellation_source__isnull=True,
                    )
                    | Q(
                        status=SubscriptionStatus.CANCELLED,
                        cancelled_at__isnull=False,
                        cancellation_source__isnull=False,
                    )
                ),
                name="subscription_cancellation_consistent",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "status", "cancelled_at"], name="subscription_cancel_idx")]

    def __str__(self) -> str:
        return f"{self.plan_name} for {self.customer_id}"


class Charge(models.Model):
    """A billable item, invoiced once."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="charges")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="charges")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, null=True, blank=True, related_name="charges"
    )
    description = models.CharField(max_length=500)
    quantity = models.DecimalField(max_digits=18, decimal_places=6, default=1)
    unit_amount = unit_amount_field()
    currency = currency_field()
    # Null means nobody said which rate applies: validation stops such a charge from being invoiced.
    tax_rate = rate_field(null=True, blank=True)
    occurred_at = models.DateTimeField()
    # Free-form facts for the invoice and for consolidation: aircraft, route, FIRs, countries …
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    invoice = models.ForeignKey(
        "invoicing.Invoice", on_delete=models.SET_NULL, null=True, blank=True, related_name="charges"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="charge_quantity_positive"),
            models.CheckConstraint(condition=Q(unit_amount__gte=0), name="charge_unit_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(tax_rate__isnull=True) | Q(tax_rate__gte=0, tax_rate__lte=1),
                name="charge_tax_rate_between_0_and_1",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "customer", "invoice"], name="charge_unbilled_idx")]

    def __str__(self) -> str:
        return self.description


class Payment(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="payments")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="payments")
    invoice = models.ForeignKey(
        "invoicing.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="payments"
    )
    method = models.CharField(max_length=16, choices=PaymentMethod.choices)
    amount = amount_field()
    currency = currency_field()
    status = models.CharField(max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING)
    # The payment rail's own id for the transaction; how bank entries and webhooks find this payment.
    rail_transaction_id = models.CharField(max_length=100, blank=True)
    reference = models.CharField(max_length=200, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    initiated_at = models.DateTimeField(auto_now_add=True)
    processing_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.UniqueConstraint(
                fields=["tenant", "rail_transaction_id"],
                condition=~Q(rail_transaction_id=""),
                name="payment_unique_rail_transaction",
            ),
            models.CheckConstraint(
                condition=~Q(status=PaymentStatus.COMPLETED) | Q(completed_at__isnull=False),
                name="payment_completed_has_timestamp",
            ),
        ]
        indexes = [
            # Reconciliation finds a payment by the reference a bank entry carries.
            models.Index(fields=["tenant", "reference"], name="payment_reference_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} ({self.status})"


class PaymentProvider(models.Model):
    """A payment rail posting webhooks to /api/v1/webhooks/payments/{slug} for one tenant.

    Two secrets so a rotation never drops events: the rail signs with both while it switches over.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="payment_providers")
    # Globally unique: the webhook URL names the provider, and the provider names the tenant.
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    signing_secret = models.CharField(max_length=200)
    # The secret being rotated out; blank once the rail signs with the new one only.
    previous_signing_secret = models.CharField(max_length=200, blank=True)
    # When the signing secret last changed: audited (the secrets themselves never enter the trail).
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.slug

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.signing_secret, self.previous_signing_secret) if s]


class WebhookEvent(models.Model):
    """One processed webhook event: its id is recorded once, so a replay changes nothing."""

    class Outcome(models.TextChoices):
        APPLIED = "applied"
        # The payment is already at or past the event's status (out of order or duplicate news).
        STALE = "stale"
        UNKNOWN_PAYMENT = "unknown_payment"
        IGNORED = "ignored"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    provider = models.ForeignKey(PaymentProvider, on_delete=models.PROTECT, related_name="events")
    event_id = models.CharField(max_length=200)
    event_type = models.CharField(max_length=64)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="webhook_event_unique_per_provider")
        ]

    def __str__(self) -> str:
        return f"{self.provider_id}:{self.event_id}"
