from django import forms
from django.contrib import admin
from django.urls import path, reverse
from django.utils.html import format_html

from core.actors import Actor
from tenancy.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin
from writeoffs import services
from writeoffs.apis import csv_response
from writeoffs.models import WriteOffCandidate, WriteOffReport, WriteOffSettings


class WriteOffSettingsForm(forms.ModelForm):
    # secrets are write-only: the form never renders the stored value, a blank keeps it
    zuora_client_secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    webhook_secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    zuora_base_url = forms.URLField(required=False, assume_scheme="https")
    webhook_url = forms.URLField(required=False, assume_scheme="https")

    class Meta:
        model = WriteOffSettings
        fields = [
            "tenant", "provider", "zuora_base_url", "zuora_client_id", "zuora_client_secret",
            "reason_code", "finance_emails", "webhook_url", "webhook_secret",
        ]


@admin.register(WriteOffSettings)
class WriteOffSettingsAdmin(TenantScopedAdmin):
    form = WriteOffSettingsForm
    list_display = ["tenant", "provider", "zuora_base_url", "finance_emails", "webhook_url", "secrets_changed_at"]
    view_permission = change_permission = "settings.manage"

    def save_model(self, request, obj, form, change):
        fields = {name: value for name, value in form.cleaned_data.items() if name != "tenant"}
        saved = services.writeoff_settings_save(tenant=form.cleaned_data["tenant"], actor=Actor.for_user(request.user), **fields)
        obj.pk = saved.pk


@admin.register(WriteOffCandidate)
class WriteOffCandidateAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["invoice", "business_date", "source", "currency", "balance", "status", "written_off_amount", "adjustments", "error"]
    list_filter = ["status", "source", "business_date", "tenant"]
    search_fields = ["invoice__number", "run__journey_id"]


@admin.register(WriteOffReport)
class WriteOffReportAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["run", "tenant", "failed_count", "created_at", "emailed_at", "webhook_delivered_at", "download"]
    exclude = ["csv"]

    @admin.display(description="CSV")
    def download(self, obj):
        url = reverse("admin:writeoffs_writeoffreport_csv", args=[obj.pk])
        return format_html('<a href="{}">report.csv</a>', url)

    def get_urls(self):
        return [path("<int:pk>/csv/", self.admin_site.admin_view(self.csv_view), name="writeoffs_writeoffreport_csv"), *super().get_urls()]

    def csv_view(self, request, pk: int):
        from django.http import Http404

        report = self.get_queryset(request).select_related("run").filter(pk=pk).first()
        if report is None or not self.has_view_permission(request, report):
            raise Http404
        return csv_response(report)
