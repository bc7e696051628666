"""Every API operation declares the permission it needs; the caller's roles in the tenant grant it.

A view says what it needs with `required_permissions`: one permission name for every method, or a
mapping whose keys are tried in this order: the viewset action (`list`, `create`, `cancel` …), the
HTTP method, then `read` (GET, HEAD, OPTIONS) or `write` (the others); a view whose
need depends on the request defines `required_permission(request)`. A view that declares nothing is
refused (403 permission-undeclared), so a new endpoint cannot be open by omission; a public endpoint
(the payment-rail webhook, signed by the rail) sets its own `permission_classes`.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from core.errors import PermissionMissing
from tenancy.resolve import resolve_tenant
from tenancy.roles import may

# HEAD and OPTIONS read what GET reads.
_READ_ALIASES = {"HEAD": "GET", "OPTIONS": "GET"}


class PermissionUndeclared(PermissionMissing):
    code = "permission-undeclared"
    title = "Operation declares no permission"


def required_permission(view, request) -> str | None:
    """The permission `view` declares for `request`, or None when it declares none."""
    decide = getattr(view, "required_permission", None)
    if callable(decide):
        return decide(request)
    declared = getattr(view, "required_permissions", None)
    if declared is None or isinstance(declared, str):
        return declared
    method = _READ_ALIASES.get(request.method, request.method)
    action = getattr(view, "action", None)
    return declared.get(action) or declared.get(method) or declared.get("read" if method == "GET" else "write")


class IsTenantMember(BasePermission):
    """Authenticated and a member of the tenant the request acts for (set on request.tenant)."""

    message = "You are not a member of a Ledgerflow tenant."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        request.tenant = resolve_tenant(request)
        return request.tenant is not None


class HasTenantPermission(IsTenantMember):
    """A member of the tenant whose roles there grant the permission the operation declares."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            # DRF throttles after the permission check, which an anonymous caller never passes:
            # throttle here, so guessing tokens is limited like any anonymous traffic (429).
            view.check_throttles(request)
            return False
        if not super().has_permission(request, view):
            return False
        needed = required_permission(view, request)
        if needed is None:
            raise PermissionUndeclared(
                "undeclared", detail=f"{type(view).__name__} declares no permission for {request.method}."
            )
        if not may(request.user, request.tenant.id, needed):
            raise PermissionMissing(needed)
        return True
