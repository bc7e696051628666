"""The three roles finance teams assign: finance-approver, finance-operator, integration."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {
    # Reviews and approves; reads everything, changes nothing by hand.
    "finance-approver": {"view": ["billing", "invoicing", "audit", "core"], "add": [], "change": []},
    # Runs the books day to day in the admin.
    "finance-operator": {
        "view": ["billing", "invoicing", "audit", "core"],
        "add": ["billing.customer"],
        "change": ["billing.customer", "billing.subscription", "billing.payment", "invoicing.invoice"],
    },
    # Another system talking to the REST API.
    "integration": {
        "view": ["billing", "invoicing", "audit"],
        "add": ["billing.customer", "billing.subscription", "billing.charge", "billing.payment", "invoicing.invoice"],
        "change": ["billing.customer", "billing.subscription", "billing.payment", "invoicing.invoice"],
    },
}


def create_groups(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, grants in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = list(Permission.objects.filter(codename__startswith="view_", content_type__app_label__in=grants["view"]))
        for verb in ("add", "change"):
            for target in grants[verb]:
                app_label, model = target.split(".")
                perms.extend(
                    Permission.objects.filter(content_type__app_label=app_label, codename=f"{verb}_{model}")
                )
        group.permissions.add(*perms)


def drop_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("billing", "0002_initial"),
        ("invoicing", "0001_initial"),
        ("audit", "0002_initial"),
    ]

    operations = [migrations.RunPython(create_groups, drop_groups)]
