"""Changes to a tenant's consolidation settings are audited (tenant-admins change them over the API)."""

from django.db import migrations

from audit.triggers import audit_trigger_operation


class Migration(migrations.Migration):
    dependencies = [
        ("consolidation", "0002_audit_triggers"),
        ("audit", "0005_update_triggers_hash_join"),
    ]

    operations = [
        audit_trigger_operation(
            table="consolidation_consolidationsettings",
            object_type="consolidation.consolidationsettings",
            columns=["number_prefix", "final_invoice_on_disable"],
        ),
    ]
