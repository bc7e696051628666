"""Audit triggers on the reconciliation tables and the payment-rail settings (columns frozen here)."""

from django.db import migrations

from audit.triggers import audit_trigger_operation

TRACKED = [
    (
        "reconciliation_bankentry",
        "reconciliation.bankentry",
        ["amount", "currency", "status", "match_status", "bank_transaction_id", "reference"],
    ),
    (
        "reconciliation_reconciliation",
        "reconciliation.reconciliation",
        [
            "status",
            "discrepancy_kind",
            "rule",
            "amount",
            "difference",
            "invoice_id",
            "payment_id",
            "bank_entry_id",
            "resolution_reason",
        ],
    ),
    (
        "reconciliation_reconciliationsettings",
        "reconciliation.reconciliationsettings",
        ["rules", "amount_tolerance"],
    ),
    # Who changed a webhook secret is recorded; the secret itself is not copied into the trail.
    ("billing_paymentprovider", "billing.paymentprovider", ["slug", "is_active"]),
]


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_audit_triggers"),
        ("billing", "0004_paymentprovider_webhookevent_and_more"),
        ("reconciliation", "0001_initial"),
    ]

    operations = [
        audit_trigger_operation(table=table, object_type=object_type, columns=columns)
        for table, object_type, columns in TRACKED
    ]
