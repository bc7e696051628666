"""Property-based run over the whole API from its own OpenAPI schema (schemathesis): every
operation, with generated valid and invalid input, never answers 5xx, answers only the status codes
its schema documents, and every response body matches its documented schema.

The caller is a member of tenant A. Both tenants have books (tests/api/world.py), and path ids are
drawn from the real records of both as often as generated ones, so operations on a record are
exercised for real (and another tenant's record answers 404). Bounded examples per operation."""

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from config.wsgi import application
from core.actors import Actor
from tests.api.world import listed_ids, seed_world

# Bounded so the whole suite stays within CI's time budget (under a minute on an idle 2-core
# machine): generated examples per operation, valid and invalid. For a deeper run raise it, and set
# LEDGERFLOW_SCHEMATHESIS_COVERAGE=1 to add schemathesis's coverage phase (every boundary and
# negative value of every parameter: ~4,000 more requests, several minutes).
MAX_EXAMPLES = int(os.environ.get("LEDGERFLOW_SCHEMATHESIS_EXAMPLES", "15"))
COVERAGE_PHASE = os.environ.get("LEDGERFLOW_SCHEMATHESIS_COVERAGE", "") == "1"
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
STEP_IDS = ["approveInvoiceBatch", "approveConsolidation", "approveWriteOff", "cancel"]


def api_token(ctx) -> str:
    """The token every generated request carries: tenant A's member from the shared fixtures,
    holding every role, so each operation is reached past its permission check."""
    from tenancy.models import Membership
    from tenancy.roles import Role
    from tenancy.services import membership_grant_role

    membership = Membership.objects.get(tenant=ctx.tenant, user=ctx.user)
    for role in Role.values:
        if role not in membership.roles:
            membership = membership_grant_role(membership=membership, role=role, actor=Actor.system("tests"))
    return ctx.token.key


@pytest.fixture
def seeded(tenant_a, tenant_b):
    """Path values that name real records: {collection: ids} over both tenants."""
    api_token(tenant_a)
    worlds = [seed_world(ctx.tenant) for ctx in (tenant_a, tenant_b)]
    collections = {}
    for ctx, world in zip((tenant_a, tenant_b), worlds, strict=True):
        for name in (
            "customers",
            "subscriptions",
            "charges",
            "payments",
            "invoices",
            "events",
            "bank-accounts",
            "bank-statements",
            "bank-entries",
            "reconciliations",
            "discrepancies",
            "consolidated-invoices",
        ):
            collections.setdefault(name, []).extend(listed_ids(ctx.client, name)[:5])
        for name, ids in world.ids.items():
            collections.setdefault(name, []).extend(ids)
        collections.setdefault("customerId", []).append(world.customer.pk)
    return collections


@pytest.fixture
def api_schema(db, seeded):
    # Calls go through the real WSGI handler, which closes the database connection after each
    # request; like Django's test client, keep the test's connection (and its transaction) open.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    loaded = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    loaded.config.phases.coverage.enabled = COVERAGE_PHASE

    @loaded.hook
    def before_generate_path_parameters(context, strategy):
        collection = context.operation.path.removeprefix("/api/v1/").split("/")[0]
        real = {}
        for parameter in context.operation.path_parameters:
            name = parameter.name
            values = (
                STEP_IDS if name == "stepId" else seeded.get(name if name == "customerId" else collection)
            )
            if not values:
                return strategy
            real[name] = st.sampled_from([str(v) for v in values])
        return st.one_of(strategy, st.fixed_dictionaries(real)) if real else strategy

    try:
        yield loaded
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.timeout(900)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
    derandomize=True,
)
def test_api_answers_only_what_its_schema_documents(case, tenant_a):
    response = case.call(headers={"Authorization": f"Token {api_token(tenant_a)}"})

    case.validate_response(response, checks=CHECKS)
