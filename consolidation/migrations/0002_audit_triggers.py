"""Audit triggers on consolidation's money, status and settings tables (columns frozen here)."""

from django.db import migrations

from audit.triggers import audit_trigger_operation

TRACKED = [
    (
        "consolidation_consolidatedinvoice",
        "consolidation.consolidatedinvoice",
        ["status", "number", "currency", "total", "totals_by_currency", "invoice_count", "due_date", "paid_at"],
    ),
    (
        "consolidation_consolidatedinvoiceline",
        "consolidation.consolidatedinvoiceline",
        ["consolidated_invoice_id", "source_invoice_id", "amount", "currency"],
    ),
    (
        "consolidation_customerbillingperiod",
        "consolidation.customerbillingperiod",
        ["enabled", "period_type", "start_day", "kyc_status", "disabled_on", "final_period_end"],
    ),
]


class Migration(migrations.Migration):
    dependencies = [
        ("consolidation", "0001_initial"),
        ("audit", "0003_audit_triggers"),
    ]

    operations = [
        audit_trigger_operation(table=table, object_type=object_type, columns=columns)
        for table, object_type, columns in TRACKED
    ]
