from django.contrib import admin

from core.models import IdempotencyKey
from tenancy.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["key", "tenant", "method", "path", "response_status", "created_at"]
    search_fields = ["key"]
