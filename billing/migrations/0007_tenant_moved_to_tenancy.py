"""Tenant and Membership now live in tenancy (tenancy/migrations/0001): billing's foreign keys point
there and billing forgets the two models. State only: no table, row or constraint changes."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0006_tenant_moved_to_tenancy"),
        ("billing", "0006_membership_roles"),
        ("consolidation", "0004_tenant_moved_to_tenancy"),
        ("core", "0004_tenant_moved_to_tenancy"),
        ("invoicing", "0008_tenant_moved_to_tenancy"),
        ("journeys", "0006_tenant_moved_to_tenancy"),
        ("reconciliation", "0007_tenant_moved_to_tenancy"),
        ("tenancy", "0001_initial"),
        ("writeoffs", "0004_tenant_moved_to_tenancy"),
    ]

    operations = [
        # The tables stay; only Django's picture of them changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="payment",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="payments",
                        to="tenancy.tenant",
                    ),
                ),
                migrations.AlterField(
                    model_name="subscription",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="subscriptions",
                        to="tenancy.tenant",
                    ),
                ),
                migrations.AlterField(
                    model_name="charge",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="charges",
                        to="tenancy.tenant",
                    ),
                ),
                migrations.AlterField(
                    model_name="paymentprovider",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="payment_providers",
                        to="tenancy.tenant",
                    ),
                ),
                migrations.AlterField(
                    model_name="webhookevent",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to="tenancy.tenant"
                    ),
                ),
                migrations.AlterField(
                    model_name="customer",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="customers",
                        to="tenancy.tenant",
                    ),
                ),
                migrations.DeleteModel(
                    name="Membership",
                ),
                migrations.DeleteModel(
                    name="Tenant",
                ),
            ]
        ),
    ]
