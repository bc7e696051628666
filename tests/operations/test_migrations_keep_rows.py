"""Migrating a populated installation forward keeps every row.

A private database is migrated to the state just before tenancy moved out of billing (Tenant and
Membership in billing, every app at the migration before its "tenant moved" one), with the content
types and permissions such an installation had, then filled with the demo data and an admin log
entry about a tenant. `manage.py migrate` then takes it forward, as an upgrade does. Every table
keeps its row count, the tenants and memberships are read back through the new models, and the
admin log still finds its tenant (the content type moved with the model).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import psycopg
import pytest
from psycopg import sql

from tests.conftest import ROOT, subprocess_env, suite_database_url
from tests.stack import PrivateRedis

pytestmark = pytest.mark.timeout(600)

_BEFORE_MOVE = """
import django, json
django.setup()
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

executor = MigrationExecutor(connection)
graph = executor.loader.graph
moved, todo = set(), [('tenancy', '0001_initial')]
while todo:
    node = todo.pop()
    if node not in moved:
        moved.add(node)
        todo.extend(child.key for child in graph.node_map[node].children)
before = [node for node in graph.nodes if node not in moved]
targets = []
for app in sorted({app for app, _ in graph.nodes}):
    mine = [n for n in before if n[0] == app]
    leaves = [n for n in mine if not any(c.key in mine for c in graph.node_map[n].children)]
    targets.extend(leaves or [(app, None)])
executor.migrate(targets)
# The content types and default permissions an installation of that time had (post_migrate wrote
# them for the models as they were: billing.tenant, billing.membership).
state = executor.loader.project_state([t for t in targets if t[1]])
with connection.cursor() as cursor:
    for model in state.apps.get_models():
        meta = model._meta
        cursor.execute(
            "INSERT INTO django_content_type (app_label, model) VALUES (%s, %s)"
            " ON CONFLICT (app_label, model) DO UPDATE SET model = EXCLUDED.model RETURNING id",
            [meta.app_label, meta.model_name],
        )
        ct = cursor.fetchone()[0]
        for action in meta.default_permissions:
            cursor.execute(
                "INSERT INTO auth_permission (name, content_type_id, codename) VALUES (%s, %s, %s)"
                " ON CONFLICT (content_type_id, codename) DO NOTHING",
                [f"Can {action} {meta.verbose_name_raw}", ct, f"{action}_{meta.model_name}"],
            )
print(json.dumps(sorted(f"{a}.{n}" for a, n in targets if n)))
"""

_POPULATE = """
import django
django.setup()
from django.core.management import call_command
from django.db import connection
call_command("seed_demo")
call_command("ensure_admin")
with connection.cursor() as cursor:
    cursor.execute("SELECT id FROM django_content_type WHERE app_label = 'billing' AND model = 'tenant'")
    ct = cursor.fetchone()[0]
    cursor.execute("SELECT id FROM auth_user WHERE username = 'admin'")
    admin = cursor.fetchone()[0]
    cursor.execute("SELECT id, name FROM billing_tenant WHERE slug = 'acme'")
    tenant, name = cursor.fetchone()
    cursor.execute(
        "INSERT INTO django_admin_log (action_time, user_id, content_type_id, object_id, object_repr,"
        " action_flag, change_message) VALUES (now(), %s, %s, %s, %s, 2, '[]')",
        [admin, ct, str(tenant), name],
    )
"""

_READ_BACK = """
import django, json
django.setup()
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from tenancy.models import Membership, Tenant
entry = LogEntry.objects.get(object_repr__isnull=False, content_type__model="tenant")
print(json.dumps({
    "tenants": sorted(Tenant.objects.values_list("slug", flat=True)),
    "roles": sorted(f"{m.user.username}={','.join(m.roles)}" for m in Membership.objects.select_related("user")),
    "logged": entry.get_edited_object().slug,
    "contentTypes": sorted(f"{c.app_label}.{c.model}" for c in ContentType.objects.filter(model__in=["tenant", "membership"])),
}))
"""


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        return {
            table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
            for table in tables
        }


def _python(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


@pytest.fixture
def private_database():
    base = suite_database_url().rsplit("/", 1)[0]
    name = f"lf_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"{base}/{name}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrating_a_database_holding_the_demo_data_forward_keeps_every_row(private_database, tmp_path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        env = subprocess_env(
            DATABASE_URL=private_database,
            REDIS_URL=redis.url,
            DJANGO_SETTINGS_MODULE="config.settings",
            DEBUG="true",
            LEDGERFLOW_ADMIN_PASSWORD="migration-test-password-1",
        )
        targets = json.loads(_python(_BEFORE_MOVE, env))
        assert "billing.0006_membership_roles" in targets and not any(t.startswith("tenancy.") for t in targets)
        _python(_POPULATE, env)
        before = _counts(private_database)
        assert before["billing_tenant"] == 2 and before["billing_membership"] >= 10 and before["invoicing_invoice"] > 0

        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        assert "Applying tenancy.0001_initial... OK" in migrate.stdout

        after = _counts(private_database)
        changed = {t: (before.get(t), after.get(t)) for t in before.keys() | after.keys() if before.get(t) != after.get(t)}
        # Only Django's own record of applied migrations grows.
        assert set(changed) == {"django_migrations"}, changed

        seen = json.loads(_python(_READ_BACK, env))
        assert seen["tenants"] == ["acme", "globex"]
        assert "acme-approver=finance-approver" in seen["roles"] and "globex-admin=tenant-admin" in seen["roles"]
        assert seen["logged"] == "acme"
        assert seen["contentTypes"] == ["tenancy.membership", "tenancy.tenant"]
    finally:
        redis.kill()
