from django.contrib import admin
from django.urls import reverse

from core.actors import Actor
from invoicing import services, workflows
from invoicing.models import Invoice, InvoiceAdjustment, InvoiceItem, InvoiceNumberSequence, TaxItem
from journeys.public import register_approval_panel
from tenancy import roles
from tenancy.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin


class _ReadOnlyInline(admin.TabularInline):
    """Lines shown, never edited here: every field read-only, so non-editable ones (created_at) may be listed."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_view_permission(self, request, obj=None):
        return True  # the invoice's page itself is allowed by the roles table (InvoiceAdmin)

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
        return self.may(request, roles.INVOICES_MANAGE, obj)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    @admin.action(description="Issue selected drafts (number and send)")
    def issue(self, request, queryset):
        actor = Actor.for_user(request.user)
        queryset = self.permitted(request, queryset, roles.INVOICES_MANAGE)
        self.run_each(request, queryset, lambda i: services.invoice_issue(invoice=i, actor=actor))

    @admin.action(description="Cancel selected invoices")
    def cancel(self, request, queryset):
        actor = Actor.for_user(request.user)
        self.run_each(
            request,
            self.permitted(request, queryset, roles.INVOICES_MANAGE),
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


# Drafts listed on the approval page; the rest are one click away in the invoice list.
DRAFTS_SHOWN = 200


def _monthly_batch_panel(request, run):
    """The monthly batch's approval page: its draft invoices and the validation findings."""
    drafts = Invoice.objects.filter(batch_run=run).select_related("customer").order_by("customer__name", "id")
    validation = run.context.get("validation") or {}
    return "admin/invoicing/monthly_batch_approval.html", {
        "batch": run.context.get("batch") or {},
        "drafts": drafts[:DRAFTS_SHOWN],
        "draft_count": drafts.count(),
        "drafts_url": reverse("admin:invoicing_invoice_changelist") + f"?batch_run={run.pk}",
        "validation": validation,
        "counts_by_kind": sorted((validation.get("countsByKind") or {}).items()),
    }


register_approval_panel(workflows.NAME, _monthly_batch_panel)
