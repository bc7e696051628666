"""Tenant and Membership move here from billing: the tables (billing_tenant, billing_membership) and
their rows stay where they are; Django's state learns the new home and the content types follow."""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# The admin log, permissions and anything else keyed by content type keep pointing at the same rows.
_CONTENT_TYPES_FORWARD = """
UPDATE django_content_type SET app_label = 'tenancy'
 WHERE app_label = 'billing' AND model IN ('tenant', 'membership')
   AND NOT EXISTS (SELECT 1 FROM django_content_type t WHERE t.app_label = 'tenancy' AND t.model = django_content_type.model)
"""
_CONTENT_TYPES_BACKWARD = """
UPDATE django_content_type SET app_label = 'billing'
 WHERE app_label = 'tenancy' AND model IN ('tenant', 'membership')
   AND NOT EXISTS (SELECT 1 FROM django_content_type b WHERE b.app_label = 'billing' AND b.model = django_content_type.model)
"""


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("billing", "0006_membership_roles"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The tables stay; only Django's picture of them changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Tenant",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("name", models.CharField(max_length=200)),
                        ("slug", models.SlugField(max_length=64, unique=True)),
                        ("default_currency", models.CharField(default="EUR", max_length=3)),
                        ("invoice_number_prefix", models.CharField(default="INV", max_length=16)),
                        ("payment_terms_days", models.PositiveSmallIntegerField(default=30)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "db_table": "billing_tenant",
                    },
                ),
                migrations.CreateModel(
                    name="Membership",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "roles",
                            django.contrib.postgres.fields.ArrayField(
                                base_field=models.CharField(
                                    choices=[
                                        ("viewer", "Viewer"),
                                        ("finance-operator", "Finance operator"),
                                        ("finance-approver", "Finance approver"),
                                        ("integration", "Integration"),
                                        ("tenant-admin", "Tenant admin"),
                                    ],
                                    max_length=32,
                                ),
                                blank=True,
                                default=list,
                                size=None,
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="memberships",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "tenant",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="memberships",
                                to="tenancy.tenant",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "billing_membership",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("tenant", "user"), name="membership_unique_tenant_user"
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    (
                                        "roles__contained_by",
                                        [
                                            "viewer",
                                            "finance-operator",
                                            "finance-approver",
                                            "integration",
                                            "tenant-admin",
                                        ],
                                    )
                                ),
                                name="membership_roles_known",
                            ),
                        ],
                    },
                ),
            ]
        ),
        migrations.RunSQL(_CONTENT_TYPES_FORWARD, _CONTENT_TYPES_BACKWARD),
    ]
