"""Roles per tenant membership and the one table of what each role may do.

The API (tenancy/permissions.py), the admin (tenancy/admin_scoping.py) and the approval decision all
read ROLE_PERMISSIONS through `may()`; nothing else grants authority. A role belongs to the
membership (user × tenant), so a person can approve in one tenant and only operate in another.
"""

from __future__ import annotations

from django.apps import apps
from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    FINANCE_OPERATOR = "finance-operator", "Finance operator"
    FINANCE_APPROVER = "finance-approver", "Finance approver"
    INTEGRATION = "integration", "Integration"
    TENANT_ADMIN = "tenant-admin", "Tenant admin"


# --- Permissions: what an operation needs ------------------------------------------------------
BOOKS_VIEW = "books.view"  # read customers, invoices, payments, bank data, journeys, consolidation
AUDIT_VIEW = "audit.view"  # read the audit trail
CUSTOMERS_MANAGE = "customers.manage"
SUBSCRIPTIONS_MANAGE = "subscriptions.manage"
CHARGES_MANAGE = "charges.manage"
PAYMENTS_MANAGE = "payments.manage"
INVOICES_MANAGE = "invoices.manage"  # draft, issue, cancel, adjust
STATEMENTS_IMPORT = "statements.import"  # bank accounts and statement files
RECONCILIATION_MATCH = "reconciliation.match"  # match and unmatch by hand, settle consolidated invoices
CONSOLIDATION_MANAGE = "consolidation.manage"  # customers' billing periods, generate, trigger
JOURNEYS_START = "journeys.start"  # start and cancel journeys
JOURNEYS_DECIDE = "journeys.decide"  # decide approval steps (never on a run one started)
SETTINGS_MANAGE = "settings.manage"  # tolerance, webhook secrets, Zuora, write-off, consolidation settings
MEMBERSHIPS_MANAGE = "memberships.manage"  # who is in the tenant with which roles

_READ = {BOOKS_VIEW, AUDIT_VIEW}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.VIEWER: frozenset(_READ),
    Role.FINANCE_OPERATOR: frozenset(
        _READ
        | {
            CUSTOMERS_MANAGE,
            SUBSCRIPTIONS_MANAGE,
            CHARGES_MANAGE,
            PAYMENTS_MANAGE,
            INVOICES_MANAGE,
            STATEMENTS_IMPORT,
            RECONCILIATION_MATCH,
            CONSOLIDATION_MANAGE,
            JOURNEYS_START,
        }
    ),
    Role.FINANCE_APPROVER: frozenset(_READ | {JOURNEYS_DECIDE}),
    # Another system: it writes what it feeds in and reads the books back; it never decides.
    Role.INTEGRATION: frozenset(
        {BOOKS_VIEW, CUSTOMERS_MANAGE, SUBSCRIPTIONS_MANAGE, CHARGES_MANAGE, PAYMENTS_MANAGE, STATEMENTS_IMPORT}
    ),
    # The tenant's settings and people; reading the books needs another role (viewer at least).
    Role.TENANT_ADMIN: frozenset({AUDIT_VIEW, SETTINGS_MANAGE, MEMBERSHIPS_MANAGE}),
}

ALL_PERMISSIONS: frozenset[str] = frozenset().union(*ROLE_PERMISSIONS.values())


def permissions_of(roles) -> frozenset[str]:
    """Everything the given roles allow together."""
    return frozenset().union(*(ROLE_PERMISSIONS.get(role, frozenset()) for role in roles))


def roles_with(permission: str) -> list[str]:
    return [role for role, granted in ROLE_PERMISSIONS.items() if permission in granted]


def roles_in(user, tenant_id: int) -> list[str]:
    Membership = apps.get_model("tenancy", "Membership")
    found = Membership.objects.filter(user=user, tenant_id=tenant_id).values_list("roles", flat=True).first()
    return list(found or [])


def may(user, tenant_id: int, permission: str) -> bool:
    """Whether `user` may do `permission` in the tenant: a role of their membership there grants it.

    A superuser (the platform's own `admin`) may do everything; an inactive or anonymous user nothing.
    """
    if permission not in ALL_PERMISSIONS:
        raise ValueError(f"Unknown permission {permission!r}.")
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return permission in permissions_of(roles_in(user, tenant_id))


def tenants_where(user, permission: str):
    """The tenants in which `user` may do `permission` (all tenants for a superuser)."""
    Tenant = apps.get_model("tenancy", "Tenant")
    if not (user.is_authenticated and user.is_active):
        return Tenant.objects.none()
    if user.is_superuser:
        return Tenant.objects.all()
    return Tenant.objects.filter(memberships__user=user, memberships__roles__overlap=roles_with(permission)).distinct()
