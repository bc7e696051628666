"""The tenant foreign keys point at tenancy.Tenant (same table, billing_tenant). State only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("journeys", "0005_map_chunks"),
        ("tenancy", "0001_initial"),
    ]

    operations = [
        # The tables stay; only Django's picture of them changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="approvalpolicy",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="approval_policies",
                        to="tenancy.tenant",
                    ),
                ),
                migrations.AlterField(
                    model_name="journeyrun",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="journey_runs",
                        to="tenancy.tenant",
                    ),
                ),
                migrations.AlterField(
                    model_name="journeyschedule",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="journey_schedules",
                        to="tenancy.tenant",
                    ),
                ),
            ]
        ),
    ]
