"""The tenant foreign keys point at tenancy.Tenant (same table, billing_tenant). State only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0001_initial"),
        ("writeoffs", "0003_settings_secrets_changed_at"),
    ]

    operations = [
        # The tables stay; only Django's picture of them changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="writeoffcandidate",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to="tenancy.tenant"
                    ),
                ),
                migrations.AlterField(
                    model_name="writeoffreport",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to="tenancy.tenant"
                    ),
                ),
                migrations.AlterField(
                    model_name="writeoffsettings",
                    name="tenant",
                    field=models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="writeoff_settings",
                        to="tenancy.tenant",
                    ),
                ),
            ]
        ),
    ]
