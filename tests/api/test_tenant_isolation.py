"""Tenant isolation over every endpoint and method: another tenant's object is 404, never 403 or 200,
and a create that references another tenant's object is refused."""

from decimal import Decimal

import pytest

from audit.models import Event
from billing.models import Charge, Customer, Payment, Subscription
from invoicing import services as invoicing
from invoicing.models import Invoice
from tests.factories import ChargeFactory, CustomerFactory, PaymentFactory, SubscriptionFactory


@pytest.fixture
def foreign(tenant_b, actor):
    """Records of tenant B that tenant A's caller must never reach."""
    customer = CustomerFactory(tenant=tenant_b.tenant)
    invoice = invoicing.invoice_create_draft(
        tenant=tenant_b.tenant,
        actor=actor,
        customer=customer,
        lines=[invoicing.DraftLine(description="Fee", quantity=Decimal(1), unit_amount=Decimal("5.00"))],
    )
    return {
        "customers": customer,
        "subscriptions": SubscriptionFactory(customer=customer),
        "charges": ChargeFactory(customer=customer),
        "payments": PaymentFactory(customer=customer),
        "invoices": invoice,
        "events": Event.objects.filter(tenant=tenant_b.tenant).first(),
    }


RETRIEVE = ["customers", "subscriptions", "charges", "payments", "invoices", "events"]
DETAIL_WRITES = [
    ("put", "customers", "", {"name": "Stolen", "currency": "EUR"}),
    ("patch", "customers", "", {"name": "Stolen"}),
    ("post", "subscriptions", "/cancel", {"source": "API"}),
    ("post", "payments", "/transition", {"status": "processing"}),
    ("post", "invoices", "/issue", {}),
    ("post", "invoices", "/cancel", {"reason": "x"}),
]


@pytest.mark.parametrize("resource", RETRIEVE)
def test_list_shows_only_own_tenant(api, foreign, resource):
    response = api.get(f"/api/v1/{resource}")

    assert response.status_code == 200
    assert foreign[resource].pk not in {row["id"] for row in response.json()["results"]}


@pytest.mark.parametrize("resource", RETRIEVE)
def test_retrieve_of_other_tenants_object_is_404(api, foreign, resource):
    response = api.get(f"/api/v1/{resource}/{foreign[resource].pk}")

    assert response.status_code == 404
    assert response.json()["code"] == "not-found"


@pytest.mark.parametrize(("method", "resource", "suffix", "body"), DETAIL_WRITES)
def test_write_to_other_tenants_object_is_404_and_changes_nothing(
    api, foreign, method, resource, suffix, body
):
    target = foreign[resource]
    before = type(target).objects.filter(pk=target.pk).values().get()

    response = getattr(api, method)(f"/api/v1/{resource}/{target.pk}{suffix}", body, format="json")

    assert response.status_code == 404
    assert type(target).objects.filter(pk=target.pk).values().get() == before


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
@pytest.mark.parametrize("resource", ["subscriptions", "charges", "payments", "invoices", "events"])
def test_records_cannot_be_edited_or_deleted_directly(api, foreign, method, resource):
    response = getattr(api, method)(f"/api/v1/{resource}/{foreign[resource].pk}", {}, format="json")

    assert response.status_code == 405


def _create_bodies(foreign, own_customer):
    fc = foreign["customers"].pk
    return [
        (
            "subscriptions",
            {
                "customer": fc,
                "planName": "P",
                "unitPrice": "1.00",
                "currency": "EUR",
                "startedOn": "2026-01-01",
            },
            "customer",
        ),
        (
            "charges",
            {
                "customer": fc,
                "description": "x",
                "unitAmount": "1.00",
                "currency": "EUR",
                "occurredAt": "2026-01-01T00:00:00Z",
            },
            "customer",
        ),
        (
            "charges",
            {
                "customer": own_customer.pk,
                "subscription": foreign["subscriptions"].pk,
                "description": "x",
                "unitAmount": "1.00",
                "currency": "EUR",
                "occurredAt": "2026-01-01T00:00:00Z",
            },
            "subscription",
        ),
        ("payments", {"customer": fc, "method": "offline", "amount": "1.00", "currency": "EUR"}, "customer"),
        (
            "payments",
            {
                "customer": own_customer.pk,
                "invoice": foreign["invoices"].pk,
                "method": "offline",
                "amount": "1.00",
                "currency": "EUR",
            },
            "invoice",
        ),
        ("invoices", {"customer": fc, "items": [{"description": "x", "unitAmount": "1.00"}]}, "customer"),
        ("invoices", {"customer": own_customer.pk, "charges": [foreign["charges"].pk]}, "charges"),
    ]


def test_create_referencing_other_tenants_object_is_rejected_naming_the_field(api, tenant_a, foreign):
    own_customer = CustomerFactory(tenant=tenant_a.tenant)
    counts = {m: m.objects.count() for m in (Customer, Subscription, Charge, Payment, Invoice)}

    for resource, body, field in _create_bodies(foreign, own_customer):
        response = api.post(f"/api/v1/{resource}", body, format="json")

        assert response.status_code == 400, (resource, response.json())
        assert field in {e["field"].split("[")[0] for e in response.json()["errors"]}, response.json()
    assert {m: m.objects.count() for m in counts} == counts


def test_unauthenticated_request_is_401(client, foreign):
    response = client.get("/api/v1/customers")

    assert response.status_code == 401


def test_user_without_membership_is_403(db):
    from rest_framework.test import APIClient

    from tests.factories import TokenFactory

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {TokenFactory().key}")

    assert client.get("/api/v1/customers").status_code == 403
