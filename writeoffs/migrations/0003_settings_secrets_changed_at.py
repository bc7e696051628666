"""When a write-off secret last changed is kept and audited; the secret values never are."""

from django.db import migrations, models

from audit.triggers import audit_trigger_sql

COLUMNS = ["provider", "zuora_base_url", "zuora_client_id", "finance_emails", "webhook_url"]
NEW, _ = audit_trigger_sql(
    table="writeoffs_writeoffsettings", object_type="writeoffs.writeoffsettings", columns=[*COLUMNS, "reason_code", "secrets_changed_at"]
)
OLD, _ = audit_trigger_sql(table="writeoffs_writeoffsettings", object_type="writeoffs.writeoffsettings", columns=COLUMNS)


class Migration(migrations.Migration):
    dependencies = [
        ("writeoffs", "0002_audit_triggers"),
        ("audit", "0005_update_triggers_hash_join"),
    ]

    operations = [
        migrations.AddField(
            model_name="writeoffsettings",
            name="secrets_changed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunSQL(NEW, OLD),
    ]
