"""Recording payments: bad amounts are refused before writing, a rail transaction id is recorded
once even when requests race (10 threads on their own database connections)."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from billing import services
from billing.models import Payment
from core.errors import ValidationFailed
from tests.factories import CustomerFactory

THREADS = 10


def race(work):
    """Run `work(i)` in THREADS threads released together; returns each thread's result or exception."""
    barrier = threading.Barrier(THREADS)
    results = [None] * THREADS

    def run(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db
@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("0.00"), Decimal("-5.00")])
def test_payment_of_zero_or_less_is_refused_naming_amount_and_writes_nothing(tenant_a, actor, amount):
    customer = CustomerFactory(tenant=tenant_a.tenant)

    with pytest.raises(ValidationFailed) as refused:
        services.payment_create(
            tenant=tenant_a.tenant, actor=actor, customer=customer, method="bank_transfer", amount=amount, currency="EUR"
        )

    assert (refused.value.status, refused.value.field) == (400, "amount")
    assert not Payment.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_ten_racing_payments_with_one_rail_transaction_id_record_one_and_refuse_nine_alike(tenant_a, actor):
    customer = CustomerFactory(tenant=tenant_a.tenant)

    results = race(
        lambda i: services.payment_create(
            tenant=tenant_a.tenant,
            actor=actor,
            customer=customer,
            method="gateway",
            amount=Decimal("10.00"),
            currency="EUR",
            rail_transaction_id="rail-123",
        )
    )

    created = [r for r in results if isinstance(r, Payment)]
    refused = [r for r in results if not isinstance(r, Payment)]
    assert len(created) == 1 and Payment.objects.count() == 1
    assert {type(r) for r in refused} == {services.RailTransactionExists}, refused
    assert {(r.status, r.code, r.field, r.extra["paymentId"]) for r in refused} == {
        (409, "rail-transaction-exists", "railTransactionId", created[0].pk)
    }


@pytest.mark.django_db(transaction=True)
def test_ten_racing_payment_requests_with_one_rail_transaction_id_get_one_201_and_nine_409_with_one_code(tenant_a):
    customer = CustomerFactory(tenant=tenant_a.tenant)
    body = {"customer": customer.pk, "method": "gateway", "amount": "10.00", "currency": "EUR", "railTransactionId": "rail-9"}

    def post(i):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {tenant_a.token.key}")
        response = client.post("/api/v1/payments", body, format="json")
        return response.status_code, response.json().get("code")

    results = race(post)

    assert sorted(results) == [(201, None)] + [(409, "rail-transaction-exists")] * (THREADS - 1)
    assert Payment.objects.count() == 1
