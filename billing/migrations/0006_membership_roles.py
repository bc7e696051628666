"""Roles belong to the membership (user × tenant), not to global groups.

Each member keeps what their groups gave them, now in each of their tenants: the group names
finance-approver, finance-operator and integration are the role names. The global groups are then
deleted so nothing can still read authority from them. Membership changes and payment-rail secret
rotations are audited (the secrets themselves never enter the trail).
"""

import django.contrib.postgres.fields
from django.conf import settings
from django.db import migrations, models

from audit.triggers import audit_trigger_sql

FORMER_GROUPS = ("finance-approver", "finance-operator", "integration")
ROLE_CHOICES = [
    ("viewer", "Viewer"),
    ("finance-operator", "Finance operator"),
    ("finance-approver", "Finance approver"),
    ("integration", "Integration"),
    ("tenant-admin", "Tenant admin"),
]

MEMBERSHIP_TRIGGER = audit_trigger_sql(table="billing_membership", object_type="billing.membership", columns=["user_id", "roles"])
PROVIDER_NEW, _ = audit_trigger_sql(
    table="billing_paymentprovider", object_type="billing.paymentprovider", columns=["slug", "is_active", "secret_rotated_at"]
)
PROVIDER_OLD, _ = audit_trigger_sql(table="billing_paymentprovider", object_type="billing.paymentprovider", columns=["slug", "is_active"])


def groups_to_roles(apps, schema_editor):
    Membership = apps.get_model("billing", "Membership")
    Group = apps.get_model("auth", "Group")
    for membership in Membership.objects.select_related("user"):
        names = set(membership.user.groups.filter(name__in=FORMER_GROUPS).values_list("name", flat=True))
        if names:
            membership.roles = sorted(names | set(membership.roles))
            membership.save(update_fields=["roles"])
    Group.objects.filter(name__in=FORMER_GROUPS).delete()


def roles_to_groups(apps, schema_editor):
    """Back to groups: a user gets every group any of their memberships had as a role."""
    Membership = apps.get_model("billing", "Membership")
    Group = apps.get_model("auth", "Group")
    for membership in Membership.objects.select_related("user"):
        for name in set(membership.roles) & set(FORMER_GROUPS):
            group, _ = Group.objects.get_or_create(name=name)
            membership.user.groups.add(group)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_merge_20261124_0738"),
        ("core", "0003_groups_for_later_apps"),
        ("journeys", "0002_audit_and_roles"),
        ("audit", "0005_update_triggers_hash_join"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="membership",
            name="roles",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(choices=ROLE_CHOICES, max_length=32), blank=True, default=list, size=None
            ),
        ),
        migrations.AddField(
            model_name="paymentprovider",
            name="secret_rotated_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name="membership",
            constraint=models.CheckConstraint(
                condition=models.Q(("roles__contained_by", [value for value, _ in ROLE_CHOICES])),
                name="membership_roles_known",
            ),
        ),
        migrations.RunPython(groups_to_roles, roles_to_groups),
        migrations.RunSQL(*MEMBERSHIP_TRIGGER),
        migrations.RunSQL(PROVIDER_NEW, PROVIDER_OLD),
    ]
