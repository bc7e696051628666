"""The tenant foreign keys point at tenancy.Tenant (same table, billing_tenant). State only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0003_groups_for_later_apps"),
        ("tenancy", "0001_initial"),
    ]

    operations = [
        # The tables stay; only Django's picture of them changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="idempotencykey",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenancy.tenant"
                    ),
                ),
            ]
        ),
    ]
