"""Idempotency-Key on POSTs that create money records."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from billing.models import Charge, Payment
from invoicing.models import Invoice


def _payment_body(customer, amount="120.00"):
    return {
        "customer": customer.pk,
        "method": "bank_transfer",
        "amount": amount,
        "currency": "EUR",
        "reference": "INV-1",
    }


def test_same_key_and_body_replays_the_first_response_without_a_duplicate(api, customer):
    first = api.post("/api/v1/payments", _payment_body(customer), format="json", HTTP_IDEMPOTENCY_KEY="pay-1")
    again = api.post("/api/v1/payments", _payment_body(customer), format="json", HTTP_IDEMPOTENCY_KEY="pay-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Payment.objects.filter(customer=customer).count() == 1


def test_same_key_with_another_body_is_422_and_creates_nothing(api, customer):
    api.post("/api/v1/payments", _payment_body(customer), format="json", HTTP_IDEMPOTENCY_KEY="pay-2")

    response = api.post(
        "/api/v1/payments", _payment_body(customer, "99.00"), format="json", HTTP_IDEMPOTENCY_KEY="pay-2"
    )

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency-key-reused"
    assert Payment.objects.filter(customer=customer).count() == 1


def test_key_of_a_failed_request_can_be_used_again(api, customer):
    bad = api.post(
        "/api/v1/payments", _payment_body(customer, "-5"), format="json", HTTP_IDEMPOTENCY_KEY="pay-3"
    )
    good = api.post("/api/v1/payments", _payment_body(customer), format="json", HTTP_IDEMPOTENCY_KEY="pay-3")

    assert bad.status_code == 400
    assert good.status_code == 201


def test_keys_are_scoped_per_tenant(api, customer, tenant_b):
    from tests.factories import CustomerFactory

    other = CustomerFactory(tenant=tenant_b.tenant)
    a = api.post("/api/v1/payments", _payment_body(customer), format="json", HTTP_IDEMPOTENCY_KEY="shared")
    b = tenant_b.client.post(
        "/api/v1/payments", _payment_body(other), format="json", HTTP_IDEMPOTENCY_KEY="shared"
    )

    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/api/v1/charges",
            lambda c: {
                "customer": c.pk,
                "description": "Overflight",
                "unitAmount": "10.00",
                "currency": "EUR",
                "occurredAt": "2026-11-01T10:00:00Z",
            },
        ),
        (
            "/api/v1/invoices",
            lambda c: {"customer": c.pk, "items": [{"description": "Fee", "unitAmount": "10.00"}]},
        ),
        (
            "/api/v1/subscriptions",
            lambda c: {
                "customer": c.pk,
                "planName": "Pro",
                "unitPrice": "10.00",
                "currency": "EUR",
                "startedOn": "2026-01-01",
            },
        ),
    ],
)
def test_every_money_create_honours_the_key(api, customer, path, body):
    responses = [
        api.post(path, body(customer), format="json", HTTP_IDEMPOTENCY_KEY=f"k-{path}") for _ in range(2)
    ]

    assert [r.status_code for r in responses] == [201, 201]
    assert responses[0].json()["id"] == responses[1].json()["id"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_create_one_record(tenant_a, customer):
    results = []

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {tenant_a.token.key}")
        try:
            results.append(
                client.post(
                    "/api/v1/payments", _payment_body(customer), format="json", HTTP_IDEMPOTENCY_KEY="race"
                )
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert [r.status_code for r in results] == [201] * 8
    assert len({r.json()["id"] for r in results}) == 1
    assert Payment.objects.filter(customer=customer).count() == 1


def test_idempotency_key_too_long_is_400(api, customer):
    response = api.post(
        "/api/v1/payments", _payment_body(customer), format="json", HTTP_IDEMPOTENCY_KEY="x" * 300
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"
    assert not Payment.objects.exists() and not Charge.objects.exists() and not Invoice.objects.exists()
