"""Bad input answers 400 with a problem naming the field, and writes nothing."""

import pytest

from audit.models import Event
from billing.models import Charge, Customer, Payment, Subscription
from core.models import IdempotencyKey
from invoicing.models import Invoice, InvoiceItem

MODELS = (Customer, Subscription, Charge, Payment, Invoice, InvoiceItem, Event, IdempotencyKey)


def _counts():
    return {m.__name__: m.objects.count() for m in MODELS}


def charge(owner, **overrides):
    body = {
        "customer": owner.pk,
        "description": "Overflight",
        "unitAmount": "10.00",
        "currency": "EUR",
        "occurredAt": "2026-11-01T10:00:00Z",
    }
    body.update(overrides)
    return body


def payment(owner, **overrides):
    body = {"customer": owner.pk, "method": "bank_transfer", "amount": "10.00", "currency": "EUR"}
    body.update(overrides)
    return body


CASES = [
    # (name, path, body builder, field named in the error)
    ("unknown field", "/api/v1/charges", lambda c: charge(c, colour="red"), "colour"),
    (
        "unknown nested field",
        "/api/v1/invoices",
        lambda c: {"customer": c.pk, "items": [{"description": "x", "unitAmount": "1", "vat": "1"}]},
        "items[0].vat",
    ),
    (
        "malformed datetime",
        "/api/v1/charges",
        lambda c: charge(c, occurredAt="2026-13-45T99:00:00Z"),
        "occurredAt",
    ),
    (
        "malformed date",
        "/api/v1/subscriptions",
        lambda c: {
            "customer": c.pk,
            "planName": "P",
            "unitPrice": "1.00",
            "currency": "EUR",
            "startedOn": "31/01/2026",
        },
        "startedOn",
    ),
    ("negative amount", "/api/v1/payments", lambda c: payment(c, amount="-10.00"), "amount"),
    ("zero payment", "/api/v1/payments", lambda c: payment(c, amount="0"), "amount"),
    ("over-precise amount", "/api/v1/payments", lambda c: payment(c, amount="10.001"), "amount"),
    ("over-precise for JPY-like", "/api/v1/payments", lambda c: payment(c, amount="1e-9"), "amount"),
    ("amount not a number", "/api/v1/payments", lambda c: payment(c, amount="ten"), "amount"),
    ("amount as boolean", "/api/v1/payments", lambda c: payment(c, amount=True), "amount"),
    ("negative unit amount", "/api/v1/charges", lambda c: charge(c, unitAmount="-1"), "unitAmount"),
    ("tax rate above 100 %", "/api/v1/charges", lambda c: charge(c, taxRate="1.5"), "taxRate"),
    ("unknown currency", "/api/v1/payments", lambda c: payment(c, currency="ABC"), "currency"),
    ("lower-case currency", "/api/v1/charges", lambda c: charge(c, currency="eur"), "currency"),
    ("currency differs from customer", "/api/v1/payments", lambda c: payment(c, currency="USD"), "currency"),
    ("unknown customer", "/api/v1/payments", lambda c: payment(c, customer=999999999), "customer"),
    ("customer id out of range", "/api/v1/payments", lambda c: payment(c, customer=2**70), "customer"),
    ("unknown method", "/api/v1/payments", lambda c: payment(c, method="cash_in_envelope"), "method"),
    ("NUL in text", "/api/v1/charges", lambda c: charge(c, description="a\x00b"), "description"),
    ("NUL in details", "/api/v1/charges", lambda c: charge(c, details={"route": "a\x00b"}), "details"),
    ("details not an object", "/api/v1/charges", lambda c: charge(c, details=[1, 2]), "details"),
    ("invoice with no lines", "/api/v1/invoices", lambda c: {"customer": c.pk}, "items"),
    (
        "period ends before it starts",
        "/api/v1/invoices",
        lambda c: {
            "customer": c.pk,
            "periodStart": "2026-02-01",
            "periodEnd": "2026-01-01",
            "items": [{"description": "x", "unitAmount": "1"}],
        },
        "periodEnd",
    ),
    (
        "customer with unknown currency",
        "/api/v1/customers",
        lambda c: {"name": "X", "currency": "XYZ"},
        "currency",
    ),
    (
        "customer with bad email",
        "/api/v1/customers",
        lambda c: {"name": "X", "currency": "EUR", "email": "not-an-email"},
        "email",
    ),
]


@pytest.mark.parametrize(("name", "path", "body", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_400_naming_the_field_and_writes_nothing(api, customer, name, path, body, field):
    before = _counts()

    response = api.post(path, body(customer), format="json", HTTP_IDEMPOTENCY_KEY=f"bad-{name}")

    assert response.status_code == 400, response.content
    problem = response.json()
    assert response["Content-Type"].startswith("application/problem+json")
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["status"] == 400
    assert field in [e["field"] for e in problem["errors"]], problem
    assert _counts() == before


def test_malformed_json_is_400(api):
    response = api.post("/api/v1/charges", data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "malformed-request"


def test_json_number_amount_is_read_exactly(api, customer):
    response = api.post(
        "/api/v1/payments",
        data=f'{{"customer": {customer.pk}, "method": "offline", "amount": 0.10, "currency": "EUR"}}',
        content_type="application/json",
    )

    assert response.status_code == 201
    assert response.json()["amount"] == "0.1000"


def test_nul_in_query_string_is_400(api):
    response = api.get("/api/v1/customers?externalRef=%00")

    assert response.status_code == 400


@pytest.mark.parametrize(
    "query", ["customer=abc", "status=nonsense", "period=2026-13", "periodStart=yesterday"]
)
def test_bad_filter_is_400_not_500(api, query):
    response = api.get(f"/api/v1/invoices?{query}")

    assert response.status_code == 400, response.content


def test_filter_by_an_id_that_cannot_exist_finds_nothing(api):
    response = api.get("/api/v1/invoices?customer=99999999999999999999999")

    assert response.status_code == 200
    assert response.json()["results"] == []
