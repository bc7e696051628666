"""The amount tolerance becomes per currency.

The old single amount was validated against the tenant's default currency, so it becomes that
currency's tolerance (a zero tolerance lists nothing: a currency not listed has tolerance 0).
The settings' audit trigger is re-installed on the new column before the old one is dropped.
"""

from decimal import Decimal

from django.db import migrations, models

from audit.triggers import audit_trigger_sql

_TABLE, _OBJECT = "reconciliation_reconciliationsettings", "reconciliation.reconciliationsettings"
_NEW_TRIGGER, _ = audit_trigger_sql(table=_TABLE, object_type=_OBJECT, columns=["rules", "amount_tolerances"])
_OLD_TRIGGER, _ = audit_trigger_sql(table=_TABLE, object_type=_OBJECT, columns=["rules", "amount_tolerance"])


def _to_per_currency(apps, schema_editor):
    Settings = apps.get_model("reconciliation", "ReconciliationSettings")
    for found in Settings.objects.select_related("tenant").filter(amount_tolerance__gt=0):
        found.amount_tolerances = {found.tenant.default_currency: str(found.amount_tolerance.normalize())}
        found.save(update_fields=["amount_tolerances"])


def _to_single(apps, schema_editor):
    Settings = apps.get_model("reconciliation", "ReconciliationSettings")
    for found in Settings.objects.select_related("tenant"):
        found.amount_tolerance = Decimal(found.amount_tolerances.get(found.tenant.default_currency, "0"))
        found.save(update_fields=["amount_tolerance"])


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0002_unmatched_proxy"),
        ("audit", "0005_update_triggers_hash_join"),
    ]

    operations = [
        migrations.AddField(
            model_name="reconciliationsettings",
            name="amount_tolerances",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(_to_per_currency, _to_single),
        migrations.RunSQL(_NEW_TRIGGER, _OLD_TRIGGER),
        migrations.RemoveConstraint(
            model_name="reconciliationsettings",
            name="recon_tolerance_non_negative",
        ),
        migrations.RemoveField(
            model_name="reconciliationsettings",
            name="amount_tolerance",
        ),
        migrations.AlterField(
            model_name="reconciliation",
            name="discrepancy_kind",
            field=models.CharField(
                blank=True,
                choices=[
                    ("amount_mismatch", "Amount Mismatch"),
                    ("missing_payment", "Missing Payment"),
                    ("missing_bank_entry", "Missing Bank Entry"),
                    ("duplicate", "Duplicate"),
                    ("timing_difference", "Timing Difference"),
                    ("overpayment", "Overpayment"),
                    ("match_failed", "Match Failed"),
                ],
                max_length=24,
            ),
        ),
    ]
