"""Admin: bank accounts and CSV profiles, statement upload, the Unmatched queue with candidates
side by side, match and unmatch. Every button calls the same service as the API."""

import json
from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse

from billing.models import Payment
from core.actors import Actor
from core.errors import ApplicationError
from core.money import parse_plain
from invoicing.models import Invoice
from reconciliation import selectors, services
from reconciliation.models import (
    BankAccount,
    BankEntry,
    BankStatement,
    CsvProfile,
    MatchStatus,
    Reconciliation,
    ReconciliationSettings,
    StatementFormat,
    UnmatchedBankEntry,
)
from tenancy import roles
from tenancy.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin


class CsvProfileInline(admin.StackedInline):
    model = CsvProfile
    extra = 0
    max_num = 1

    # The bank account's page decides (obj is the account): the roles table, not Django's model perms.
    def _may(self, request, obj, permission):
        return request.user.is_superuser or (obj is None or roles.may(request.user, obj.tenant_id, permission))

    def has_view_permission(self, request, obj=None):
        return self._may(request, obj, roles.BOOKS_VIEW)

    def has_add_permission(self, request, obj=None):
        return self._may(request, obj, roles.STATEMENTS_IMPORT)

    def has_change_permission(self, request, obj=None):
        return self._may(request, obj, roles.STATEMENTS_IMPORT)

    def has_delete_permission(self, request, obj=None):
        return self._may(request, obj, roles.STATEMENTS_IMPORT)


@admin.register(BankAccount)
class BankAccountAdmin(TenantScopedAdmin):
    list_display = ["name", "iban", "currency", "tenant"]
    list_filter = ["tenant", "currency"]
    inlines = [CsvProfileInline]
    change_permission = roles.STATEMENTS_IMPORT


@admin.register(CsvProfile)
class CsvProfileAdmin(TenantScopedAdmin):
    tenant_field = "bank_account__tenant"
    change_permission = roles.STATEMENTS_IMPORT
    list_display = ["bank_account", "delimiter", "date_format", "decimal_separator"]


class ReconciliationSettingsForm(forms.ModelForm):
    """Tolerances as JSON, amounts as strings or numbers read exactly: {"EUR": "1.00", "JPY": "100"}."""

    amount_tolerances = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='Per currency, e.g. {"EUR": "0.05", "JPY": "5"}; a currency not listed has tolerance 0.',
    )

    class Meta:
        model = ReconciliationSettings
        fields = ["tenant", "rules", "amount_tolerances", "bank_entry_grace_days"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["amount_tolerances"] = json.dumps(self.instance.amount_tolerances)

    def clean_amount_tolerances(self):
        raw = (self.cleaned_data.get("amount_tolerances") or "").strip() or "{}"
        try:
            parsed = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
        except ValueError:
            raise forms.ValidationError('Write a JSON object such as {"EUR": "0.05"}.') from None
        try:
            tolerances = services.tolerances_parse(parsed)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.detail) from None
        # Strings, as stored: the model field holds JSON, where a Decimal has no place.
        return {currency: str(amount) for currency, amount in tolerances.items()}


@admin.register(ReconciliationSettings)
class ReconciliationSettingsAdmin(TenantScopedAdmin):
    list_display = ["tenant", "rules", "amount_tolerances", "bank_entry_grace_days"]
    form = ReconciliationSettingsForm
    view_permission = change_permission = roles.SETTINGS_MANAGE

    def save_model(self, request, obj, form, change):
        actor = Actor.for_user(request.user)
        found = services.settings_update(
            tenant=obj.tenant,
            actor=actor,
            rules=obj.rules,
            amount_tolerances=form.cleaned_data["amount_tolerances"],
        )
        obj.pk = found.pk


class StatementUploadForm(forms.ModelForm):
    file = forms.FileField(help_text="CAMT.053 (XML), MT940 or CSV (with the account's column profile).")
    format = forms.ChoiceField(choices=[("", "detect")] + list(StatementFormat.choices), required=False)

    class Meta:
        model = BankStatement
        fields = ["bank_account"]

    def clean(self):
        cleaned = super().clean()
        account, upload = cleaned.get("bank_account"), cleaned.get("file")
        if account is None or upload is None:
            return cleaned
        try:
            # The import is the service's transaction: all or nothing, like the API upload.
            self.result = services.statement_import(
                tenant=account.tenant,
                actor=self.actor,
                bank_account=account,
                stream=upload.file,
                file_name=upload.name,
                format=cleaned.get("format") or None,
            )
        except ApplicationError as exc:
            raise forms.ValidationError(exc.detail) from None
        return cleaned


@admin.register(BankStatement)
class BankStatementAdmin(TenantScopedAdmin):
    list_display = [
        "id",
        "bank_account",
        "format",
        "statement_ref",
        "entry_count",
        "new_entry_count",
        "imported_at",
    ]
    list_filter = ["tenant", "format"]
    form = StatementUploadForm
    change_permission = roles.STATEMENTS_IMPORT  # adds (uploads); a statement is never changed

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.actor = Actor.for_user(request.user)
        return form

    def save_model(self, request, obj, form, change):
        obj.pk = form.result.statement.pk
        obj.__dict__.update(form.result.statement.__dict__)
        result = form.result
        if len(result.statements) > 1:
            # An archive: the page that follows names the first statement; say what all of them did.
            messages.info(
                request,
                f"{len(result.statements)} statements imported from the archive: {result.entry_count} entries, "
                f"{result.new_entry_count} of them new.",
            )

    def save_related(self, request, form, formsets, change):
        pass


class BankEntryAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = [
        "booking_date",
        "amount",
        "currency",
        "counterparty_name",
        "reference",
        "remittance_text",
        "status",
        "match_status",
    ]
    list_filter = ["tenant", "status", "match_status", "bank_account", "booking_date"]
    search_fields = ["reference", "remittance_text", "counterparty_name", "bank_transaction_id"]
    change_form_template = "admin/reconciliation/bankentry/change_form.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        entry = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if entry is not None:
            extra["candidates"] = selectors.candidates_for_entry(entry=entry)
            extra["entry"] = entry
            extra["can_match"] = entry.match_status != MatchStatus.RECONCILED and self.may(
                request, roles.RECONCILIATION_MATCH, entry
            )
            extra["match_url"] = reverse("admin:reconciliation_bankentry_match", args=[entry.pk])
            extra["reconciliations"] = entry.reconciliations.all()
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def get_urls(self):
        return [
            path(
                "<int:pk>/match/",
                self.admin_site.admin_view(self.match_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_match",
            ),
            *super().get_urls(),
        ]

    def match_view(self, request, pk):
        """POST from the side-by-side: match this entry to one invoice (and payment) by hand."""
        entry = get_object_or_404(self.get_queryset(request), pk=pk)
        back = redirect(reverse("admin:reconciliation_bankentry_change", args=[entry.pk]))
        if request.method != "POST" or not self.may(request, roles.RECONCILIATION_MATCH, entry):
            return back
        tenants = [entry.tenant_id]
        payment_id = request.POST.get("payment") or None
        if payment_id is None:
            # The same rule as the service (three-way): said before anything else is looked up.
            self.message_user(request, "payment: pick the payment this bank entry settles.", messages.ERROR)
            return back
        try:
            invoice = Invoice.objects.get(pk=request.POST.get("invoice"), tenant__in=tenants)
            amount = parse_plain(request.POST.get("amount", ""))
            payment = Payment.objects.get(pk=payment_id, tenant__in=tenants)
            services.reconciliation_match_manual(
                tenant=entry.tenant,
                actor=Actor.for_user(request.user),
                bank_entry=entry,
                invoices=[(invoice, amount)],
                payment=payment,
                reason=request.POST.get("reason", ""),
            )
        except (Invoice.DoesNotExist, Payment.DoesNotExist, InvalidOperation, ValueError):
            self.message_user(
                request, "Pick an invoice, a payment of yours and a valid amount.", messages.ERROR
            )
        except ApplicationError as exc:
            prefix = f"{exc.field}: " if exc.field else ""
            self.message_user(request, f"{prefix}{exc.detail}", messages.ERROR)
        else:
            self.message_user(request, f"Matched to {invoice}.", messages.SUCCESS)
        return back


admin.site.register(BankEntry, BankEntryAdmin)


@admin.register(UnmatchedBankEntry)
class UnmatchedBankEntryAdmin(BankEntryAdmin):
    """The "Unmatched" view: credits waiting for an operator."""

    def get_queryset(self, request):
        return super().get_queryset(request).filter(match_status=MatchStatus.UNMATCHED, amount__gt=0)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The side-by-side lives on the bank entry page.
        return redirect(reverse("admin:reconciliation_bankentry_change", args=[object_id]))


@admin.register(Reconciliation)
class ReconciliationAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = [
        "id",
        "status",
        "discrepancy_kind",
        "rule",
        "invoice",
        "payment",
        "bank_entry",
        "amount",
        "difference",
        "created_at",
    ]
    list_filter = ["tenant", "status", "discrepancy_kind", "rule"]
    change_form_template = "admin/reconciliation/reconciliation/change_form.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = dict(extra_context or {})
        extra["unmatch_url"] = reverse("admin:reconciliation_reconciliation_unmatch", args=[object_id])
        recon = self.get_object(request, object_id)
        extra["can_unmatch"] = recon is not None and self.may(request, roles.RECONCILIATION_MATCH, recon)
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def get_urls(self):
        return [
            path(
                "<int:pk>/unmatch/",
                self.admin_site.admin_view(self.unmatch_view),
                name="reconciliation_reconciliation_unmatch",
            ),
            *super().get_urls(),
        ]

    def unmatch_view(self, request, pk):
        recon = get_object_or_404(self.get_queryset(request), pk=pk)
        if request.method == "POST" and self.may(request, roles.RECONCILIATION_MATCH, recon):
            try:
                services.reconciliation_unmatch(
                    reconciliation=recon,
                    actor=Actor.for_user(request.user),
                    reason=request.POST.get("reason", ""),
                )
            except ApplicationError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
            else:
                self.message_user(request, "Unmatched.", messages.SUCCESS)
        return redirect(reverse("admin:reconciliation_reconciliation_change", args=[recon.pk]))
