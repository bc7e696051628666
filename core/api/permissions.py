from rest_framework.permissions import BasePermission

from core.api.tenancy import resolve_tenant


class IsTenantMember(BasePermission):
    """Authenticated and a member of the tenant the request acts for (set on request.tenant)."""

    message = "You are not a member of a Ledgerflow tenant."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        request.tenant = resolve_tenant(request)
        return request.tenant is not None
