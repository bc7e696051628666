"""Property-based run over the whole API from its own OpenAPI schema: no 500, no response that
violates the schema, whatever a client sends (bounded number of examples per operation)."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from config.wsgi import application
from tests.factories import ChargeFactory, CustomerFactory, PaymentFactory, SubscriptionFactory

# Bounded so the whole suite stays within CI's time budget; raise locally for a deeper run.
MAX_EXAMPLES = 15


@pytest.fixture
def api_schema(db):
    # Calls go through the real WSGI handler, which closes the database connection after each
    # request; like Django's test client, keep the test's connection (and its transaction) open.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def populated(tenant_a, tenant_b):
    """Both tenants have records, so ids the generator picks can hit real rows of either."""
    for ctx in (tenant_a, tenant_b):
        customer = CustomerFactory(tenant=ctx.tenant)
        SubscriptionFactory(customer=customer)
        ChargeFactory(customer=customer)
        PaymentFactory(customer=customer)
    return tenant_a


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
def test_api_never_answers_500_and_always_matches_its_schema(case, populated):
    response = case.call(headers={"Authorization": f"Token {populated.token.key}"})

    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:500]}"
    )
    case.validate_response(response, checks=[response_schema_conformance])
