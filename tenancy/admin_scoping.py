"""Admin base: every view and action obeys the roles table (tenancy/roles.py) for the tenant of the row.

Staff who are not superusers see only rows of tenants where one of their roles grants the admin's
`view_permission`, change them only where a role grants `change_permission`, and pick only those
tenants in forms. Actions run only over the rows whose tenant grants what the action needs
(`permitted`). A permission of None means the platform's superusers only.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import models

from core.errors import ApplicationError
from core.forms import PlainDecimalField
from tenancy.models import Tenant
from tenancy.roles import BOOKS_VIEW, may, tenants_where


def user_tenants(user):
    if user.is_superuser:
        return Tenant.objects.all()
    return Tenant.objects.filter(memberships__user=user)


class TenantScopedAdmin(admin.ModelAdmin):
    tenant_field = "tenant"
    formfield_overrides = {models.DecimalField: {"form_class": PlainDecimalField}}
    # What seeing, changing (and adding) and deleting rows needs in the row's tenant.
    view_permission: str | None = BOOKS_VIEW
    change_permission: str | None = None
    delete_permission: str | None = None

    # --- The roles table, for the tenant being viewed -------------------------------------------
    def tenant_id_of(self, obj) -> int | None:
        *path, last = self.tenant_field.split("__")
        for name in path:
            obj = getattr(obj, name)
        return getattr(obj, f"{last}_id")

    def may(self, request, permission: str | None, obj=None) -> bool:
        """Whether the user may `permission` in `obj`'s tenant (without obj: in one of their tenants)."""
        user = request.user
        if user.is_superuser:
            return True
        if permission is None or not (user.is_active and user.is_staff):
            return False
        if obj is None:
            return tenants_where(user, permission).exists()
        return may(user, self.tenant_id_of(obj), permission)

    def permitted(self, request, queryset, permission: str):
        """The rows of `queryset` whose tenant lets the user do `permission`; says so when some are not."""
        if request.user.is_superuser:
            return queryset
        allowed = queryset.filter(**{f"{self.tenant_field}__in": tenants_where(request.user, permission)})
        refused = queryset.count() - allowed.count()
        if refused:
            self.message_user(
                request, f"{refused} row(s) skipped: this needs the permission {permission!r} in their tenant.", messages.ERROR
            )
        return allowed

    def run_each(self, request, queryset, call) -> None:
        """An action over rows: `call(row)` for each, a row's ApplicationError reported, the rest go on."""
        done = 0
        for obj in queryset:
            try:
                call(obj)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"{obj}: {exc.detail}", messages.ERROR)
        if done:
            self.message_user(request, f"{done} done.", messages.SUCCESS)

    # --- Django's hooks ----------------------------------------------------------------------------
    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        readable = {p for p in (self.view_permission, self.change_permission) if p}
        tenants = Tenant.objects.none()
        for permission in readable:
            tenants = tenants | tenants_where(request.user, permission)
        return queryset.filter(**{f"{self.tenant_field}__in": tenants.values("pk")})

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        return self.may(request, self.view_permission, obj) or self.may(request, self.change_permission, obj)

    def has_change_permission(self, request, obj=None):
        return self.may(request, self.change_permission, obj)

    def has_add_permission(self, request, obj=None):
        return self.may(request, self.change_permission)

    def has_delete_permission(self, request, obj=None):
        return self.may(request, self.delete_permission, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if request.user.is_superuser or field is None:
            return field
        model = db_field.related_model
        writable = (
            tenants_where(request.user, self.change_permission)
            if self.change_permission
            else Tenant.objects.none()
        )
        if model is Tenant:
            field.queryset = writable
        elif any(f.name == "tenant" for f in model._meta.get_fields()):
            field.queryset = field.queryset.filter(tenant__in=writable)
        return field


class ReadOnlyAdminMixin:
    """Records written only by services or triggers: visible, never edited in the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
