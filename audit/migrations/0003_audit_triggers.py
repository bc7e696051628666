"""Audit triggers on every table holding money or a status (columns frozen here on purpose:
a later change of tracked columns is a new migration)."""

from django.db import migrations

from audit.triggers import audit_trigger_operation

TRACKED = [
    (
        "billing_subscription",
        "billing.subscription",
        ["status", "unit_price", "quantity", "currency", "cancelled_at", "cancellation_source"],
    ),
    ("billing_charge", "billing.charge", ["quantity", "unit_amount", "currency", "tax_rate", "invoice_id"]),
    ("billing_payment", "billing.payment", ["status", "amount", "currency", "invoice_id", "failure_reason"]),
    (
        "invoicing_invoice",
        "invoicing.invoice",
        [
            "status",
            "number",
            "currency",
            "subtotal",
            "tax_total",
            "total",
            "amount_paid",
            "amount_credited",
            "balance",
            "due_date",
        ],
    ),
    ("invoicing_invoiceitem", "invoicing.invoiceitem", ["amount", "available_to_credit_amount"]),
    ("invoicing_taxitem", "invoicing.taxitem", ["amount", "available_to_credit_amount"]),
    (
        "invoicing_invoiceadjustment",
        "invoicing.invoiceadjustment",
        ["type", "amount", "invoice_item_id", "tax_item_id"],
    ),
]


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_initial"),
        ("billing", "0002_initial"),
        ("invoicing", "0001_initial"),
    ]

    operations = [
        audit_trigger_operation(table=table, object_type=object_type, columns=columns)
        for table, object_type, columns in TRACKED
    ]
