from django import forms
from django.contrib import admin

from billing import services, webhooks
from billing.lifecycle import CancellationSource, PaymentStatus, SubscriptionStatus
from billing.models import Charge, Customer, Payment, PaymentProvider, Subscription, WebhookEvent
from core.actors import Actor
from tenancy import roles
from tenancy.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin


@admin.register(Customer)
class CustomerAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "external_ref", "email", "currency", "is_active"]
    list_filter = ["tenant", "currency", "is_active"]
    search_fields = ["name", "external_ref", "email"]
    change_permission = roles.CUSTOMERS_MANAGE

    def save_model(self, request, obj, form, change):
        actor = Actor.for_user(request.user)
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name != "tenant"}
        if change:
            services.customer_update(customer=obj, actor=actor, **fields)
        else:
            data = {k: v for k, v in form.cleaned_data.items() if k not in ("tenant", "name", "currency")}
            created = services.customer_create(
                tenant=form.cleaned_data["tenant"], actor=actor, name=obj.name, currency=obj.currency, **data
            )
            obj.pk = created.pk


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = [
        "plan_name",
        "customer",
        "unit_price",
        "currency",
        "status",
        "started_on",
        "cancelled_at",
        "cancellation_source",
    ]
    list_filter = ["tenant", "status", "cancellation_source"]
    search_fields = ["plan_name", "customer__name"]
    actions = ["cancel"]

    def has_change_permission(self, request, obj=None):
        return self.may(request, roles.SUBSCRIPTIONS_MANAGE, obj)

    @admin.action(description="Cancel selected subscriptions (source UI)")
    def cancel(self, request, queryset):
        actor = Actor.for_user(request.user)
        self.run_each(
            request,
            self.permitted(request, queryset, roles.SUBSCRIPTIONS_MANAGE).filter(status=SubscriptionStatus.ACTIVE),
            lambda s: services.subscription_cancel(subscription=s, actor=actor, source=CancellationSource.UI),
        )

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = [
        "description",
        "customer",
        "quantity",
        "unit_amount",
        "currency",
        "tax_rate",
        "occurred_at",
        "invoice",
    ]
    list_filter = ["tenant", "currency"]
    search_fields = ["description", "customer__name"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = [
        "id",
        "customer",
        "invoice",
        "method",
        "amount",
        "currency",
        "status",
        "rail_transaction_id",
        "initiated_at",
    ]
    list_filter = ["tenant", "status", "method"]
    search_fields = ["rail_transaction_id", "reference", "customer__name"]
    actions = ["mark_processing", "mark_completed", "mark_failed"]

    def has_change_permission(self, request, obj=None):
        return self.may(request, roles.PAYMENTS_MANAGE, obj)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def _move(self, request, queryset, status):
        actor = Actor.for_user(request.user)
        self.run_each(
            request,
            self.permitted(request, queryset, roles.PAYMENTS_MANAGE),
            lambda p: services.payment_transition(payment=p, actor=actor, status=status, reason="admin"),
        )

    @admin.action(description="Mark processing")
    def mark_processing(self, request, queryset):
        self._move(request, queryset, PaymentStatus.PROCESSING)

    @admin.action(description="Mark completed")
    def mark_completed(self, request, queryset):
        self._move(request, queryset, PaymentStatus.COMPLETED)

    @admin.action(description="Mark failed")
    def mark_failed(self, request, queryset):
        self._move(request, queryset, PaymentStatus.FAILED)


class PaymentProviderForm(forms.ModelForm):
    # Write-only: never rendered back; blank keeps the stored secret, a new one rotates it.
    new_signing_secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False), help_text="Blank keeps the current secret."
    )

    class Meta:
        model = PaymentProvider
        fields = ["tenant", "slug", "name", "is_active"]

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is None and not cleaned.get("new_signing_secret"):
            self.add_error("new_signing_secret", "A provider needs a signing secret.")
        return cleaned


@admin.register(PaymentProvider)
class PaymentProviderAdmin(TenantScopedAdmin):
    """Each rail's webhook URL slug and its signing secrets (write-only; rotating keeps the previous one)."""

    form = PaymentProviderForm
    list_display = ["slug", "name", "tenant", "is_active", "secret_rotated_at", "created_at"]
    list_filter = ["tenant", "is_active"]
    view_permission = change_permission = roles.SETTINGS_MANAGE

    def save_model(self, request, obj, form, change):
        actor = Actor.for_user(request.user)
        secret = form.cleaned_data.get("new_signing_secret")
        if change and secret:
            webhooks.payment_provider_save(provider=obj, actor=actor)
            webhooks.payment_provider_rotate_secret(provider=obj, secret=secret, actor=actor)
            return
        if secret:
            obj.signing_secret = secret
        webhooks.payment_provider_save(provider=obj, actor=actor)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["event_id", "provider", "event_type", "outcome", "payment", "received_at"]
    list_filter = ["tenant", "provider", "outcome", "event_type"]
    search_fields = ["event_id"]
