"""Tenancy, the ground floor every app stands on: tenants, the people in them and their roles.

Every row of every app belongs to one tenant; a membership says what its user may do there
(tenancy/roles.py). Nothing here imports a domain app.
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from core.fields import currency_field
from tenancy.roles import Role


class Tenant(models.Model):
    """A finance team's books. Every row of every app belongs to exactly one tenant."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    default_currency = currency_field(default="EUR")
    invoice_number_prefix = models.CharField(max_length=16, default="INV")
    # Days between an invoice's issue date and its due date when the caller does not say.
    payment_terms_days = models.PositiveSmallIntegerField(default=30)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The table kept its name when the model moved here from billing (tenancy/migrations/0001).
        db_table = "billing_tenant"

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's place in a tenant; API callers act for the tenant of their membership.

    Written only by tenancy.services.membership_* (the admin, the API and seed_demo call them).
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    # What the user may do in this tenant (tenancy/roles.py maps each role to its permissions).
    roles = ArrayField(models.CharField(max_length=32, choices=Role.choices), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "billing_membership"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_tenant_user"),
            models.CheckConstraint(
                condition=Q(roles__contained_by=Role.values), name="membership_roles_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant}"
