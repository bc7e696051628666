"""Subscriptions over the API: created with their tax rate, cancelled once with a source."""

from decimal import Decimal

from billing.models import Subscription


def test_subscription_is_created_with_its_tax_rate_and_cancelled_once(api, customer):
    created = api.post(
        "/api/v1/subscriptions",
        {"customer": customer.pk, "planName": "Pro", "unitPrice": "99.00", "currency": "EUR", "startedOn": "2026-01-01", "taxRate": "0.19"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert Subscription.objects.get(pk=created.json()["id"]).tax_rate == Decimal("0.19")

    first = api.post(f"/api/v1/subscriptions/{created.json()['id']}/cancel", {"source": "SALESFORCE"}, format="json")
    second = api.post(f"/api/v1/subscriptions/{created.json()['id']}/cancel", {"source": "UI"}, format="json")

    assert first.status_code == 200 and first.json()["cancellationSource"] == "SALESFORCE" and first.json()["cancelledAt"]
    assert second.status_code == 409
