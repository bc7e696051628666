"""Candidate outcomes and write-off settings changes go to the audit trail."""

from django.db import migrations

from audit.triggers import audit_trigger_operation


class Migration(migrations.Migration):
    dependencies = [
        ("writeoffs", "0001_initial"),
        ("audit", "0003_audit_triggers"),
    ]

    operations = [
        audit_trigger_operation(
            table="writeoffs_writeoffcandidate",
            object_type="writeoffs.writeoffcandidate",
            columns=["status", "balance", "written_off_amount", "adjustments", "error"],
        ),
        audit_trigger_operation(
            table="writeoffs_writeoffsettings",
            object_type="writeoffs.writeoffsettings",
            columns=["provider", "zuora_base_url", "zuora_client_id", "finance_emails", "webhook_url"],
        ),
    ]
