from django.contrib import admin

from audit.actors import Actor
from billing.admin import _run
from core.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin
from invoicing import services
from invoicing.models import Invoice, InvoiceAdjustment, InvoiceItem, InvoiceNumberSequence, TaxItem


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class InvoiceItemInline(_ReadOnlyInline):
    model = InvoiceItem
    fields = [
        "position",
        "description",
        "quantity",
        "unit_amount",
        "amount",
        "tax_rate",
        "available_to_credit_amount",
    ]


class TaxItemInline(_ReadOnlyInline):
    model = TaxItem
    fk_name = "invoice"
    fields = ["invoice_item", "name", "rate", "taxable_amount", "amount", "available_to_credit_amount"]


class AdjustmentInline(_ReadOnlyInline):
    model = InvoiceAdjustment
    fields = [
        "type",
        "amount",
        "invoice_item",
        "tax_item",
        "reason",
        "source",
        "idempotency_key",
        "created_at",
    ]


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = [
        "__str__",
        "tenant",
        "customer",
        "status",
        "currency",
        "total",
        "balance",
        "issue_date",
        "due_date",
    ]
    list_filter = ["tenant", "status", "currency"]
    search_fields = ["number", "customer__name"]
    inlines = [InvoiceItemInline, TaxItemInline, AdjustmentInline]
    actions = ["issue", "cancel"]

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("invoicing.change_invoice")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    @admin.action(description="Issue selected drafts (number and send)")
    def issue(self, request, queryset):
        actor = Actor.for_user(request.user)
        _run(self, request, queryset, lambda i: services.invoice_issue(invoice=i, actor=actor))

    @admin.action(description="Cancel selected invoices")
    def cancel(self, request, queryset):
        actor = Actor.for_user(request.user)
        _run(
            self,
            request,
            queryset,
            lambda i: services.invoice_cancel(invoice=i, actor=actor, reason="cancelled in the admin"),
        )


@admin.register(InvoiceAdjustment)
class InvoiceAdjustmentAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["invoice", "type", "amount", "reason", "source", "idempotency_key", "created_at"]
    list_filter = ["tenant", "type", "source"]


@admin.register(InvoiceNumberSequence)
class InvoiceNumberSequenceAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["tenant", "year", "last_value"]


@admin.register(InvoiceItem)
class InvoiceItemAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["invoice", "position", "description", "amount", "tax_rate", "available_to_credit_amount"]
    list_filter = ["tenant"]
    search_fields = ["description", "invoice__number"]


@admin.register(TaxItem)
class TaxItemAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["invoice", "invoice_item", "name", "rate", "amount", "available_to_credit_amount"]
    list_filter = ["tenant", "name"]
