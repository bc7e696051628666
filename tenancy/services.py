"""Every write to tenancy: memberships and their roles. A tenant always keeps one tenant-admin."""

from __future__ import annotations

from core.actors import Actor
from core.attribution import audited
from core.errors import Conflict, ValidationFailed
from tenancy.models import Membership, Tenant
from tenancy.roles import Role


class LastTenantAdmin(Conflict):
    """A tenant always keeps one tenant-admin, so someone can still manage its people and settings."""

    code = "last-tenant-admin"
    title = "Last tenant-admin"


def _require_roles(roles) -> list[str]:
    unknown = sorted(set(roles) - set(Role.values))
    if unknown:
        raise ValidationFailed(f"Unknown role {unknown[0]!r}: one of {', '.join(Role.values)}.", field="role")
    return sorted(set(roles))


def _lock_tenant_admins(tenant_id: int) -> None:
    # Every tenant-admin row of the tenant, in one order: two admins revoking each other cannot both win.
    list(Membership.objects.select_for_update().filter(tenant_id=tenant_id, roles__contains=[Role.TENANT_ADMIN]).order_by("pk"))


def _require_other_admin(membership: Membership) -> None:
    others = (
        Membership.objects.filter(tenant_id=membership.tenant_id, roles__contains=[Role.TENANT_ADMIN], user__is_active=True)
        .exclude(pk=membership.pk)
        .exists()
    )
    if not others:
        raise LastTenantAdmin("The tenant's last tenant-admin keeps that role: make someone else tenant-admin first.")


def membership_create(*, tenant: Tenant, user, actor: Actor, roles=()) -> Membership:
    """Put `user` in `tenant` with `roles`; an existing membership gains the roles (never loses any)."""
    wanted = _require_roles(roles)
    with audited(actor=actor, reason="membership created"):
        membership, _ = Membership.objects.select_for_update().get_or_create(tenant=tenant, user=user)
        missing = [r for r in wanted if r not in membership.roles]
        if missing:
            membership.roles = sorted({*membership.roles, *missing})
            membership.save(update_fields=["roles"])
    return membership


def membership_grant_role(*, membership: Membership, role: str, actor: Actor) -> Membership:
    """Give the member `role` in the membership's tenant (granting it twice changes nothing)."""
    _require_roles([role])
    with audited(actor=actor, reason=f"role {role} granted"):
        locked = Membership.objects.select_for_update().get(pk=membership.pk)
        if role not in locked.roles:
            locked.roles = sorted({*locked.roles, role})
            locked.save(update_fields=["roles"])
    return locked


def membership_revoke_role(*, membership: Membership, role: str, actor: Actor) -> Membership:
    """Take `role` away; the tenant's last active tenant-admin keeps it (409 last-tenant-admin)."""
    _require_roles([role])
    with audited(actor=actor, reason=f"role {role} revoked"):
        _lock_tenant_admins(membership.tenant_id)
        locked = Membership.objects.select_for_update().get(pk=membership.pk)
        if role not in locked.roles:
            return locked
        if role == Role.TENANT_ADMIN:
            _require_other_admin(locked)
        locked.roles = [r for r in locked.roles if r != role]
        locked.save(update_fields=["roles"])
    return locked


def membership_remove(*, membership: Membership, actor: Actor) -> None:
    """Take the user out of the tenant; the last tenant-admin cannot be removed."""
    with audited(actor=actor, reason="membership removed"):
        _lock_tenant_admins(membership.tenant_id)
        locked = Membership.objects.select_for_update().filter(pk=membership.pk).first()
        if locked is None:
            return
        if Role.TENANT_ADMIN in locked.roles:
            _require_other_admin(locked)
        locked.delete()
