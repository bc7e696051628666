"""Give the finance roles their rights on the apps that came after the foundation:
reconciliation, write-offs, consolidation and the payment providers."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GRANTS = {
    "finance-approver": {"view": ["reconciliation", "writeoffs", "consolidation"], "add": [], "change": []},
    "finance-operator": {
        "view": ["reconciliation", "writeoffs", "consolidation"],
        "add": ["reconciliation.bankstatement", "reconciliation.bankaccount", "reconciliation.csvprofile"],
        "change": [
            "reconciliation.bankentry", "reconciliation.reconciliation", "reconciliation.bankaccount",
            "reconciliation.csvprofile", "reconciliation.reconciliationsettings", "writeoffs.writeoffsettings",
            "consolidation.customerbillingperiod", "consolidation.consolidationsettings", "billing.paymentprovider",
        ],
    },
    "integration": {
        "view": ["reconciliation", "consolidation"],
        "add": ["reconciliation.bankstatement"],
        "change": ["reconciliation.bankentry", "consolidation.customerbillingperiod"],
    },
}


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, grants in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = list(Permission.objects.filter(codename__startswith="view_", content_type__app_label__in=grants["view"]))
        for verb in ("add", "change"):
            for target in grants[verb]:
                app_label, model = target.split(".")
                perms.extend(Permission.objects.filter(content_type__app_label=app_label, codename=f"{verb}_{model}"))
        group.permissions.add(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_groups"),
        ("reconciliation", "0002_unmatched_proxy"),
        ("writeoffs", "0002_audit_triggers"),
        ("consolidation", "0002_audit_triggers"),
        ("billing", "0005_merge_20261124_0738"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
