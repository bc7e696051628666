from django.contrib import admin, messages

from audit.actors import Actor
from billing import services, webhooks
from billing.lifecycle import CancellationSource, PaymentStatus, SubscriptionStatus
from billing.models import (
    Charge,
    Customer,
    Membership,
    Payment,
    PaymentProvider,
    Subscription,
    Tenant,
    WebhookEvent,
)
from core.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin, user_tenants
from core.errors import ApplicationError


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "default_currency", "invoice_number_prefix", "payment_terms_days"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        return user_tenants(request.user)


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    list_display = ["user", "tenant", "created_at"]
    list_filter = ["tenant"]


@admin.register(Customer)
class CustomerAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "external_ref", "email", "currency", "is_active"]
    list_filter = ["tenant", "currency", "is_active"]
    search_fields = ["name", "external_ref", "email"]

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


def _run(modeladmin, request, queryset, call):
    done = 0
    for obj in queryset:
        try:
            call(obj)
            done += 1
        except ApplicationError as exc:
            modeladmin.message_user(request, f"{obj}: {exc.detail}", messages.ERROR)
    if done:
        modeladmin.message_user(request, f"{done} done.", messages.SUCCESS)


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
        return request.user.has_perm("billing.change_subscription")

    @admin.action(description="Cancel selected subscriptions (source UI)")
    def cancel(self, request, queryset):
        actor = Actor.for_user(request.user)
        _run(
            self,
            request,
            queryset.filter(status=SubscriptionStatus.ACTIVE),
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
        return request.user.has_perm("billing.change_payment")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def _move(self, request, queryset, status):
        actor = Actor.for_user(request.user)
        _run(
            self,
            request,
            queryset,
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


@admin.register(PaymentProvider)
class PaymentProviderAdmin(TenantScopedAdmin):
    """Each rail's webhook URL slug and its signing secrets (the previous one while rotating)."""

    list_display = ["slug", "name", "tenant", "is_active", "created_at"]
    list_filter = ["tenant", "is_active"]

    def save_model(self, request, obj, form, change):
        webhooks.payment_provider_save(provider=obj, actor=Actor.for_user(request.user))


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["event_id", "provider", "event_type", "outcome", "payment", "received_at"]
    list_filter = ["tenant", "provider", "outcome", "event_type"]
    search_fields = ["event_id"]
