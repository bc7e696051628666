from django.contrib import admin

from audit.actors import Actor
from billing.admin import _run
from consolidation import services
from consolidation.models import (
    ConsolidatedInvoice,
    ConsolidatedInvoiceLine,
    ConsolidationNumberSequence,
    ConsolidationSettings,
    CustomerBillingPeriod,
)
from core.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin, user_tenants


@admin.register(ConsolidationSettings)
class ConsolidationSettingsAdmin(admin.ModelAdmin):
    list_display = ["tenant", "number_prefix", "final_invoice_on_disable"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(tenant__in=user_tenants(request.user))


@admin.register(CustomerBillingPeriod)
class CustomerBillingPeriodAdmin(TenantScopedAdmin):
    """Customer settings; saving goes through the service (final period on disable and so on)."""

    list_display = ["customer", "tenant", "enabled", "period_type", "start_day", "kyc_status", "enabled_since", "final_period_end"]
    list_filter = ["tenant", "enabled", "period_type", "kyc_status"]
    search_fields = ["customer__name", "customer__external_ref"]
    fields = ["tenant", "customer", "enabled", "period_type", "start_day", "kyc_status"]
    actions = ["generate_now"]

    def save_model(self, request, obj, form, change):
        saved = services.customer_billing_period_update(
            customer=form.cleaned_data["customer"],
            actor=Actor.for_user(request.user),
            enabled=form.cleaned_data["enabled"],
            period_type=form.cleaned_data["period_type"],
            start_day=form.cleaned_data["start_day"],
            kyc_status=form.cleaned_data["kyc_status"],
        )
        obj.pk = saved.pk

    @admin.action(description="Generate the current period's consolidated invoice now")
    def generate_now(self, request, queryset):
        actor = Actor.for_user(request.user)
        _run(
            self,
            request,
            queryset.select_related("customer__tenant"),
            lambda row: services.consolidated_generate(customer=row.customer, actor=actor, user=request.user),
        )


class LineInline(admin.TabularInline):
    model = ConsolidatedInvoiceLine
    extra = 0
    can_delete = False
    fields = ["invoice_date", "source_invoice", "invoice_number", "amount", "currency", "details"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ConsolidatedInvoice)
class ConsolidatedInvoiceAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["__str__", "tenant", "customer", "period_start", "period_end", "status", "total", "currency", "invoice_count", "due_date"]
    list_filter = ["tenant", "status", "period_type"]
    search_fields = ["number", "customer__name"]
    inlines = [LineInline]

    def has_change_permission(self, request, obj=None):
        # viewable with its lines; every field is read-only (services write it)
        return False


@admin.register(ConsolidatedInvoiceLine)
class ConsolidatedInvoiceLineAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["consolidated_invoice", "invoice_number", "invoice_date", "amount", "currency"]
    list_filter = ["tenant"]
    search_fields = ["invoice_number", "consolidated_invoice__number"]


@admin.register(ConsolidationNumberSequence)
class ConsolidationNumberSequenceAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["tenant", "period_key", "last_value"]
