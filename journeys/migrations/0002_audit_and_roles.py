"""Run state changes go to the audit trail; finance approvers may decide approval steps."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from audit.triggers import audit_trigger_operation


def grant_approve(apps, schema_editor):
    app_config = apps.get_app_config("journeys")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    journeys = Permission.objects.filter(content_type__app_label="journeys")
    for name, codenames in {
        "finance-approver": ["approve_run", "view_journeyrun", "view_journeystep", "view_journeytimer", "view_journeyapproval", "view_journeyschedule"],
        "finance-operator": ["view_journeyrun", "view_journeystep", "view_journeytimer", "view_journeyapproval", "view_journeyschedule"],
        "integration": ["view_journeyrun"],
    }.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*journeys.filter(codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("journeys", "0001_initial"),
        ("core", "0002_groups"),
        ("audit", "0003_audit_triggers"),
    ]

    operations = [
        audit_trigger_operation(
            table="journeys_journeyrun", object_type="journeys.journeyrun", columns=["phase", "current_state"]
        ),
        migrations.RunPython(grant_approve, migrations.RunPython.noop),
    ]
