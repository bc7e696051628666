from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse

from billing.lifecycle import PaymentStatus
from billing.models import Payment
from consolidation import services
from consolidation.lifecycle import ConsolidatedStatus
from consolidation.models import (
    ConsolidatedInvoice,
    ConsolidatedInvoiceLine,
    ConsolidationNumberSequence,
    ConsolidationSettings,
    CustomerBillingPeriod,
)
from core.actors import Actor
from core.errors import ApplicationError
from reconciliation.models import BankEntry, MatchStatus
from tenancy import roles
from tenancy.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin


@admin.register(ConsolidationSettings)
class ConsolidationSettingsAdmin(TenantScopedAdmin):
    list_display = ["tenant", "number_prefix", "final_invoice_on_disable"]
    fields = ["tenant", "number_prefix", "final_invoice_on_disable"]
    view_permission = change_permission = roles.SETTINGS_MANAGE

    def get_readonly_fields(self, request, obj=None):
        return ["tenant"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        saved = services.consolidation_settings_update(
            tenant=obj.tenant,
            actor=Actor.for_user(request.user),
            number_prefix=form.cleaned_data["number_prefix"],
            final_invoice_on_disable=form.cleaned_data["final_invoice_on_disable"],
        )
        obj.pk = saved.pk


@admin.register(CustomerBillingPeriod)
class CustomerBillingPeriodAdmin(TenantScopedAdmin):
    """Customer settings; saving goes through the service (final period on disable and so on)."""

    list_display = ["customer", "tenant", "enabled", "period_type", "start_day", "kyc_status", "enabled_since", "final_period_end"]
    list_filter = ["tenant", "enabled", "period_type", "kyc_status"]
    search_fields = ["customer__name", "customer__external_ref"]
    fields = ["tenant", "customer", "enabled", "period_type", "start_day", "kyc_status"]
    actions = ["generate_now"]
    change_permission = roles.CONSOLIDATION_MANAGE

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
        self.run_each(
            request,
            self.permitted(request, queryset, roles.CONSOLIDATION_MANAGE).select_related("customer__tenant"),
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

    def has_view_permission(self, request, obj=None):
        return True  # the consolidated invoice's page itself is allowed by the roles table


@admin.register(ConsolidatedInvoice)
class ConsolidatedInvoiceAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["__str__", "tenant", "customer", "period_start", "period_end", "status", "total", "currency", "invoice_count", "due_date"]
    list_filter = ["tenant", "status", "period_type"]
    search_fields = ["number", "customer__name"]
    inlines = [LineInline]
    change_form_template = "admin/consolidation/consolidatedinvoice/change_form.html"

    def has_change_permission(self, request, obj=None):
        # viewable with its lines; every field is read-only (services write it)
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        ci = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if ci is not None and ci.status in (ConsolidatedStatus.PENDING, ConsolidatedStatus.OVERDUE):
            extra["can_settle"] = self.may(request, roles.RECONCILIATION_MATCH, ci)
            extra["settle_url"] = reverse("admin:consolidation_consolidatedinvoice_settle", args=[ci.pk])
            extra["bank_entries"] = BankEntry.objects.filter(
                tenant_id=ci.tenant_id, currency=ci.currency, match_status=MatchStatus.UNMATCHED
            ).order_by("-booking_date", "-id")[:50]
            extra["payments"] = Payment.objects.filter(
                customer_id=ci.customer_id, currency=ci.currency, status=PaymentStatus.COMPLETED
            ).order_by("-id")[:50]
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def get_urls(self):
        return [
            path(
                "<int:pk>/settle/",
                self.admin_site.admin_view(self.settle_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_settle",
            ),
            *super().get_urls(),
        ]

    def settle_view(self, request, pk):
        """POST from the change page: the same service as POST /consolidated-invoices/{id}/settle, for
        whoever may match bank entries by hand."""
        ci = get_object_or_404(self.get_queryset(request), pk=pk)
        back = redirect(reverse("admin:consolidation_consolidatedinvoice_change", args=[ci.pk]))
        if request.method != "POST" or not self.may(request, roles.RECONCILIATION_MATCH, ci):
            return back
        entry = BankEntry.objects.filter(pk=_id(request.POST.get("bank_entry")), tenant_id=ci.tenant_id).first()
        payment = Payment.objects.filter(pk=_id(request.POST.get("payment")), tenant_id=ci.tenant_id).first()
        try:
            services.consolidated_invoice_settle(
                consolidated_invoice=ci,
                actor=Actor.for_user(request.user),
                bank_entry=entry,
                payment=payment,
                reason=request.POST.get("reason", ""),
            )
        except ApplicationError as exc:
            self.message_user(request, f"{exc.field + ': ' if exc.field else ''}{exc.detail}", messages.ERROR)
        else:
            self.message_user(request, f"{ci} is paid.", messages.SUCCESS)
        return back


def _id(raw: str | None) -> int | None:
    """A posted id, or None for anything that is not one (the service then names the field)."""
    return int(raw) if raw and raw.strip().isdigit() else None


@admin.register(ConsolidatedInvoiceLine)
class ConsolidatedInvoiceLineAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["consolidated_invoice", "invoice_number", "invoice_date", "amount", "currency"]
    list_filter = ["tenant"]
    search_fields = ["invoice_number", "consolidated_invoice__number"]


@admin.register(ConsolidationNumberSequence)
class ConsolidationNumberSequenceAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["tenant", "period_key", "last_value"]
