"""Shared fixtures: tenants with API clients, a system actor, draft and issued invoices."""

import os
from decimal import Decimal
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from core.actors import Actor
from invoicing import services as invoicing_services
from tests.factories import CustomerFactory, MembershipFactory, TenantFactory, TokenFactory


@pytest.fixture
def actor():
    return Actor.system("tests")


class TenantContext:
    """A tenant, one of its members with a token, and an API client authenticated as them."""

    def __init__(self, tenant, user, token):
        self.tenant, self.user, self.token = tenant, user, token
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")


def make_tenant_context(**tenant_kwargs) -> TenantContext:
    tenant = TenantFactory(**tenant_kwargs)
    membership = MembershipFactory(tenant=tenant)
    token = TokenFactory(user=membership.user)
    return TenantContext(tenant, membership.user, token)


@pytest.fixture
def tenant_a(db):
    return make_tenant_context(name="Acme Air Navigation", slug="acme")


@pytest.fixture
def tenant_b(db):
    return make_tenant_context(name="Globex Aviation", slug="globex")


@pytest.fixture
def api(tenant_a):
    return tenant_a.client


@pytest.fixture
def customer(tenant_a):
    return CustomerFactory(tenant=tenant_a.tenant)


@pytest.fixture
def draft_invoice(tenant_a, customer, actor):
    return invoicing_services.invoice_create_draft(
        tenant=tenant_a.tenant,
        actor=actor,
        customer=customer,
        lines=[
            invoicing_services.DraftLine(
                description="Navigation fee",
                quantity=Decimal("2"),
                unit_amount=Decimal("50.00"),
                tax_rate=Decimal("0.19"),
            ),
            invoicing_services.DraftLine(
                description="Handling", quantity=Decimal("1"), unit_amount=Decimal("10.00")
            ),
        ],
    )


@pytest.fixture
def issued_invoice(draft_invoice, actor, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return invoicing_services.invoice_issue(invoice=draft_invoice, actor=actor)


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker (in a thread) consuming the default and io queues through the real Redis."""
    from celery.contrib.testing.worker import start_worker

    from config.celery_app import app

    app.control.purge()
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=["default", "io"], shutdown_timeout=30
    ) as worker:
        yield worker
    # The worker thread keeps its connection between tasks (CELERY_DB_REUSE_MAX); end it so the
    # test database can be flushed and dropped.
    terminate_other_sessions()


def terminate_other_sessions():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def wait_for(predicate, *, timeout: float = 20.0, interval: float = 0.05):
    """Poll until `predicate()` is truthy (work happening in another process or thread)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def grant_approver(user):
    """Give `user` the finance-approver role in each tenant they belong to (or, with no membership
    yet, in the first one MembershipFactory gives them)."""
    from tenancy.models import Membership
    from tenancy.roles import Role
    from tenancy.services import membership_grant_role

    memberships = list(Membership.objects.filter(user=user))
    for membership in memberships:
        membership_grant_role(membership=membership, role=Role.FINANCE_APPROVER, actor=Actor.system("tests"))
    if not memberships:
        user.pending_test_roles = (Role.FINANCE_APPROVER,)
    return user


ROOT = Path(__file__).resolve().parents[1]
# What a subprocess of the suite takes from the caller's environment: how to find programs, the
# home and temporary directories and the locale. Nothing that configures Ledgerflow (EMAIL_URL,
# DATABASE_URL, REDIS_URL, CELERY_*, DJANGO_*, LEDGERFLOW_*, DEBUG …): a subprocess stack gets
# exactly what its test passes, so an operator's shell cannot change what the test sees.
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "VIRTUAL_ENV", "SYSTEMROOT")


def subprocess_env(**variables: str) -> dict[str, str]:
    """A clean environment for a subprocess started by a test: INHERITED_ENV plus `variables`."""
    env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
    # LEDGERFLOW_DOTENV=off: the checkout's .env (a developer's EMAIL_URL …) is not read either.
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", LOG_JSON="false", LEDGERFLOW_DOTENV="off")
    env.update(variables)
    return env


def suite_database_url() -> str:
    """The URL of the test database this process uses (for a subprocess worker to share it)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
