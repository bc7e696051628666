from django.contrib import admin

from audit.models import Event
from tenancy.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    view_permission = "audit.view"
    list_display = [
        "occurred_at",
        "tenant",
        "object_type",
        "object_id",
        "action",
        "actor_type",
        "actor_label",
        "reason",
    ]
    list_filter = ["object_type", "action", "actor_type", "tenant"]
    search_fields = ["actor_label", "reason", "object_type"]
    date_hierarchy = "occurred_at"
