"""Admin base: staff who are not superusers see and pick only their own tenants' rows."""

from django.apps import apps
from django.contrib import admin

# By name, not by import: the ground floor (and the journeys kernel's admin, which uses this) must
# not import the billing app, whose models the tenant lives in (an import-linter contract).
TENANT_MODEL = "billing.Tenant"


def _tenant_model():
    return apps.get_model(TENANT_MODEL)


def user_tenants(user):
    tenant = _tenant_model()
    if user.is_superuser:
        return tenant.objects.all()
    return tenant.objects.filter(memberships__user=user)


class TenantScopedAdmin(admin.ModelAdmin):
    tenant_field = "tenant"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.tenant_field}__in": user_tenants(request.user)})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if request.user.is_superuser or field is None:
            return field
        model = db_field.related_model
        if model is _tenant_model():
            field.queryset = user_tenants(request.user)
        elif any(f.name == "tenant" for f in model._meta.get_fields()):
            field.queryset = field.queryset.filter(tenant__in=user_tenants(request.user))
        return field


class ReadOnlyAdminMixin:
    """Records written only by services or triggers: visible, never edited in the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
