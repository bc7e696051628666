"""Which tenant an API request acts for."""

import re

from core.errors import ValidationFailed
from tenancy.models import Tenant

TENANT_HEADER = "X-Tenant"
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,200}")


def resolve_tenant(request) -> Tenant | None:
    """The caller's tenant: their only membership, or the one named by the X-Tenant header (slug)."""
    tenants = Tenant.objects.filter(memberships__user=request.user)
    wanted = request.headers.get(TENANT_HEADER)
    if wanted and not _SLUG.fullmatch(wanted):
        # A NUL or other text no slug has would reach PostgreSQL (a NUL cannot even be sent to it).
        raise ValidationFailed(f"{TENANT_HEADER} must be a tenant's slug.", field=TENANT_HEADER)
    if wanted:
        return tenants.filter(slug=wanted).first()
    found = list(tenants[:2])
    if len(found) > 1:
        raise ValidationFailed(
            f"You belong to several tenants: name one with the {TENANT_HEADER} header.", field=TENANT_HEADER
        )
    return found[0] if found else None
