"""The tenant foreign keys point at tenancy.Tenant (same table, billing_tenant). State only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("consolidation", "0003_settings_audit_trigger"),
        ("tenancy", "0001_initial"),
    ]

    operations = [
        # The tables stay; only Django's picture of them changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="consolidatedinvoice",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="consolidated_invoices",
                        to="tenancy.tenant",
                    ),
                ),
                migrations.AlterField(
                    model_name="consolidatedinvoiceline",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to="tenancy.tenant"
                    ),
                ),
                migrations.AlterField(
                    model_name="consolidationnumbersequence",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenancy.tenant"
                    ),
                ),
                migrations.AlterField(
                    model_name="consolidationsettings",
                    name="tenant",
                    field=models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="consolidation_settings",
                        to="tenancy.tenant",
                    ),
                ),
                migrations.AlterField(
                    model_name="customerbillingperiod",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to="tenancy.tenant"
                    ),
                ),
            ]
        ),
    ]
