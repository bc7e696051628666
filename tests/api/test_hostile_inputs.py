"""Hostile input, through the real API: each answers a 4xx problem naming what is wrong (or 413),
never a 500 or an HTML page, and writes nothing (row counts, audit events included, are unchanged)."""

import time

import pytest
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from audit.models import Event
from billing.models import Charge, Customer, Payment, Subscription, WebhookEvent
from billing.webhooks import SIGNATURE_HEADER, sign
from consolidation.models import ConsolidatedInvoice
from core.models import IdempotencyKey
from invoicing.models import Invoice, InvoiceItem, TaxItem
from journeys.models import JourneyRun, JourneySchedule
from tests.consolidation.helpers import enabled_customer
from tests.factories import PaymentProviderFactory

pytestmark = pytest.mark.django_db

MODELS = (
    Customer,
    Subscription,
    Charge,
    Payment,
    Invoice,
    InvoiceItem,
    TaxItem,
    WebhookEvent,
    IdempotencyKey,
    JourneyRun,
    JourneySchedule,
    PeriodicTask,
    ConsolidatedInvoice,
    Event,
)
WEBHOOK = "/api/v1/webhooks/payments/cardrail"
SIGNATURE = "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")
SECRET = "whsec_hostile"


def _counts():
    return {model.__name__: model.objects.count() for model in MODELS}


@pytest.fixture
def client(tenant_a):
    """The tenant's client, but a server error is answered (as in production) instead of raised."""
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {tenant_a.token.key}")
    return client


@pytest.fixture
def provider(tenant_a):
    return PaymentProviderFactory(tenant=tenant_a.tenant, slug="cardrail", signing_secret=SECRET)


def assert_problem(response, status, field=None):
    """A problem-details answer with `status`, naming `field` among its errors when given."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json"), response["Content-Type"]
    body = response.json()
    assert body["status"] == status and {"type", "title", "detail", "code"} <= body.keys(), body
    if field is not None:
        assert field in [error["field"] for error in body.get("errors", [])], body
    return body


def signed(body: bytes) -> dict:
    timestamp = int(time.time())
    return {SIGNATURE: f"t={timestamp},v1={sign(secret=SECRET, timestamp=timestamp, body=body)}"}


# --- Payment-rail webhook -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [
        "t=" + "9" * 400 + ",v1=00",  # compared with the clock it overflowed a float (500)
        "t=\u00b2,v1=00",  # '²'.isdigit() is True, int('²') raises (500)
        "t=\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660,v1=00",  # Arabic-Indic digits
    ],
    ids=["400-digit", "superscript", "arabic-indic"],
)
def test_webhook_signature_header_with_an_absurd_timestamp_is_400_before_anything(client, provider, header):
    before = _counts()

    response = client.post(
        WEBHOOK,
        data=b'{"id": "evt_1", "type": "x", "data": {}}',
        content_type="application/json",
        **{SIGNATURE: header},
    )

    assert assert_problem(response, 400)["code"] == "invalid-signature"
    assert _counts() == before


@pytest.mark.parametrize("depth", [100_000, 2_000], ids=["100000-levels", "2000-levels"])
def test_signed_webhook_body_nested_deeply_is_400_naming_the_body(client, provider, depth):
    body = (
        b'{"id": "evt_deep", "type": "payment.completed", "data": {"x": '
        + b"[" * depth
        + b"]" * depth
        + b"}}"
    )
    before = _counts()

    response = client.post(WEBHOOK, data=body, content_type="application/json", **signed(body))

    assert_problem(response, 400, "body")
    assert _counts() == before


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "evt\\u0000", "type": "x", "data": {}}',
        b'{"id": "evt_2", "type": "x", "data": {"a": "\\u0000"}}',
    ],
    ids=["in-id", "in-data"],
)
def test_signed_webhook_with_a_nul_character_is_400_naming_the_body(client, provider, body):
    before = _counts()

    response = client.post(WEBHOOK, data=body, content_type="application/json", **signed(body))

    assert_problem(response, 400, "body")
    assert _counts() == before


# --- Bodies over the size limit, server errors, unknown paths -------------------------------------
def test_webhook_body_over_the_size_limit_is_413_problem(client, provider, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = b'{"id": "evt_big", "type": "x", "data": {"pad": "' + b"x" * 2048 + b'"}}'
    before = _counts()

    response = client.post(WEBHOOK, data=body, content_type="application/json", **signed(body))

    assert assert_problem(response, 413)["code"] == "request-too-large"
    assert _counts() == before


def test_api_body_over_the_size_limit_is_413_problem(client, customer, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    before = _counts()

    response = client.post(
        "/api/v1/charges",
        {"customer": customer.pk, "description": "x" * 4096, "unitAmount": "1", "currency": "EUR"},
        format="json",
    )

    assert_problem(response, 413)
    assert _counts() == before


@pytest.mark.urls("tests.api.failing_urls")
def test_server_error_on_an_api_path_is_a_problem_without_details(client, settings):
    settings.DEBUG = False

    response = client.get("/api/v1/failing")

    body = assert_problem(response, 500)
    assert body["code"] == "internal-error"
    assert "secret detail" not in response.content.decode()
    assert response["X-Request-Id"]


@pytest.mark.urls("tests.api.failing_urls")
def test_server_error_outside_the_api_stays_an_html_page(client, settings):
    settings.DEBUG = False

    response = client.get("/failing")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/v1/no-such-thing", 404),
        ("delete", "/api/v1/customers", 405),
        ("get", "/api/v1/invoices/abc", 404),
    ],
)
def test_unknown_path_or_method_is_a_problem(client, method, path, status):
    assert_problem(getattr(client, method)(path), status)


# --- Durations, periods and filters -----------------------------------------------------------------
START = "/api/v1/journeys/monthly-invoicing-batch/start"


def batch(tenant, **overrides):
    body = {
        "tenantId": tenant.slug,
        "batchId": "main",
        "firstRunAt": "2026-12-01T06:00:00+01:00",
        "interval": "P1M",
        "maxRuns": 12,
    }
    return {**body, **overrides}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"interval": "P99999999Y"}, "interval"),
        ({"interval": "P9999Y"}, "interval"),
        ({"interval": "PT99999999999999999999H"}, "interval"),
        ({"interval": "P0.5M"}, "interval"),
        ({"gracePeriodDuration": "P99999999Y"}, "gracePeriodDuration"),
        ({"reminderGapDuration": "P9000Y"}, "reminderGapDuration"),
        # each part fits, but run 12 would fall in the year 10000
        ({"firstRunAt": "9999-06-01T06:00:00+00:00"}, "interval"),
        ({"maxRuns": "1_2"}, "maxRuns"),
        ({"maxRuns": "\uff11\uff12"}, "maxRuns"),  # full-width "12"
    ],
    ids=lambda v: str(v) if isinstance(v, str) else next(iter(v.values())),
)
def test_batch_schedule_out_of_the_calendar_is_400_naming_the_field(client, tenant_a, overrides, field):
    before = _counts()

    response = client.post(START, batch(tenant_a.tenant, **overrides), format="json")

    assert_problem(response, 400, field)
    assert _counts() == before


def test_consolidation_period_start_at_the_end_of_the_calendar_is_400_naming_it(client, tenant_a):
    customer = enabled_customer(tenant_a.tenant)
    before = _counts()

    response = client.post(
        "/api/v1/consolidated-invoices/generate",
        {"customer": customer.pk, "periodStart": "9999-12-31"},
        format="json",
    )

    assert_problem(response, 400, "periodStart")
    assert _counts() == before


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/consolidated-invoices?period=9999-W60",
        "/api/v1/consolidated-invoices?period=0000-M13",
        "/api/v1/consolidated-invoices?period=0000-W01",
        "/api/v1/consolidated-invoices?period=9999-W52",  # exists, but its Sunday is in 10000
        "/api/v1/consolidated-invoices?period=2026-W00",
        "/api/v1/invoices?period=0000-01",
    ],
)
def test_period_filter_outside_the_calendar_is_400_naming_period(client, query):
    response = client.get(query)

    if query.endswith("9999-W52"):
        assert response.status_code == 200 and response.json()["results"] == []
    else:
        assert_problem(response, 400, "period")


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/charges?occurredFrom=0001-01-01T00:00:00%2B05:00",
        "/api/v1/events?occurredTo=9999-12-31T23:00:00-05:00",
    ],
    ids=["before-year-1-in-utc", "after-9999-in-utc"],
)
def test_instant_filter_outside_the_calendar_in_utc_is_400_naming_it(client, query):
    field = query.split("?")[1].split("=")[0]

    assert_problem(client.get(query), 400, field)


def test_issue_date_whose_due_date_falls_after_9999_is_400_naming_it(client, draft_invoice):
    before = _counts()

    response = client.post(
        f"/api/v1/invoices/{draft_invoice.pk}/issue", {"issueDate": "9999-12-31"}, format="json"
    )

    assert_problem(response, 400, "issueDate")
    assert _counts() == before
    draft_invoice.refresh_from_db()
    assert draft_invoice.status == "draft" and draft_invoice.number in ("", None)


# --- Money overflow -------------------------------------------------------------------------------
def line(unit_amount, quantity, **extra):
    return {"description": "Overflight", "unitAmount": unit_amount, "quantity": quantity, **extra}


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([line("999999999999999999", "999999999999")], "items[0].unitAmount"),  # InvalidOperation (500)
        ([line("999999999999", "9999999")], "items[0].unitAmount"),  # DataError, no field named
        ([line("1", "1"), line("999999999999", "9999999")], "items[1].unitAmount"),
        ([line("99999999999999999", "1", taxRate="1")] * 20, "items"),  # each line fits, the total does not
    ],
    ids=["unit-times-quantity", "smaller-overflow", "second-line", "total"],
)
def test_invoice_whose_amounts_overflow_is_400_naming_the_field(client, customer, items, field):
    before = _counts()

    response = client.post("/api/v1/invoices", {"customer": customer.pk, "items": items}, format="json")

    body = assert_problem(response, 400, field)
    assert "E+" not in body["detail"] and "E-" not in body["detail"]
    assert _counts() == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/v1/charges",
            {
                "description": "Overflight",
                "unitAmount": "999999999999999999",
                "occurredAt": "2026-11-01T10:00:00Z",
            },
            "unitAmount",
        ),
        (
            "/api/v1/subscriptions",
            {"planName": "Pro", "unitPrice": "999999999999999999", "startedOn": "2026-01-01"},
            "unitPrice",
        ),
    ],
    ids=["charge", "subscription"],
)
def test_billable_item_that_could_never_be_invoiced_is_400_naming_its_price(
    client, customer, path, body, field
):
    before = _counts()

    response = client.post(
        path, {**body, "customer": customer.pk, "quantity": "999999999999", "currency": "EUR"}, format="json"
    )

    assert_problem(response, 400, field)
    assert _counts() == before


# --- Plain decimal notation only ----------------------------------------------------------------
NOT_PLAIN = ["1_000", "\uff11\uff10\uff10", "\u0661\u0660", "1e3", " 10", "10 ", "10.", ".5"]


@pytest.mark.parametrize("amount", NOT_PLAIN)
def test_payment_amount_not_in_plain_decimal_notation_is_400(client, customer, amount):
    before = _counts()

    response = client.post(
        "/api/v1/payments",
        {"customer": customer.pk, "method": "bank_transfer", "amount": amount, "currency": "EUR"},
        format="json",
    )

    assert_problem(response, 400, "amount")
    assert _counts() == before


@pytest.mark.parametrize("field", ["unitAmount", "quantity", "taxRate"])
@pytest.mark.parametrize("text", ["0_1", "\uff11"])
def test_invoice_line_numbers_not_in_plain_decimal_notation_are_400(client, customer, field, text):
    before = _counts()
    item = {**line("10.00", "1"), field: text}

    response = client.post("/api/v1/invoices", {"customer": customer.pk, "items": [item]}, format="json")

    assert_problem(response, 400, f"items[0].{field}")
    assert _counts() == before


@pytest.mark.parametrize("amount", ["10", "0.5", "+7", "1000000.25", "0.1000"])
def test_plain_decimal_notation_is_accepted(client, customer, amount):
    response = client.post(
        "/api/v1/invoices", {"customer": customer.pk, "items": [line(amount, "1")]}, format="json"
    )

    assert response.status_code == 201, response.content


# --- Every bad field in one answer, in words for people ------------------------------------------
def test_unknown_field_does_not_hide_the_other_bad_fields(client, customer):
    before = _counts()

    response = client.post(
        "/api/v1/charges",
        {
            "customer": customer.pk,
            "description": "x",
            "colour": "red",
            "unitAmount": "ten",
            "currency": "XYZ",
            "occurredAt": "2026-11-01T10:00:00Z",
        },
        format="json",
    )

    body = assert_problem(response, 400)
    assert {"colour", "unitAmount", "currency"} <= {error["field"] for error in body["errors"]}, body
    assert _counts() == before


def test_unknown_field_does_not_hide_a_rule_across_fields(client, customer):
    response = client.post(
        "/api/v1/invoices",
        {
            "customer": customer.pk,
            "periodStart": "2026-02-01",
            "periodEnd": "2026-01-01",
            "items": [{**line("1", "1"), "vat": "1"}],
            "colour": "red",
        },
        format="json",
    )

    body = assert_problem(response, 400)
    assert {"colour", "items[0].vat"} <= {error["field"] for error in body["errors"]}, body


@pytest.mark.parametrize(
    ("path", "field", "value", "message"),
    [
        ("/api/v1/payments", "amount", "0", "Must be greater than 0."),
        ("/api/v1/payments", "amount", "-0", "Must be greater than 0."),
        ("/api/v1/charges", "unitAmount", "-1", "Must be at least 0."),
        ("/api/v1/charges", "taxRate", "1.5", "Must be at most 1."),
    ],
)
def test_bounds_are_told_in_plain_amounts(client, customer, path, field, value, message):
    body = {
        "customer": customer.pk,
        "description": "x",
        "method": "bank_transfer",
        "amount": "1",
        "unitAmount": "1",
        "currency": "EUR",
        "occurredAt": "2026-11-01T10:00:00Z",
        field: value,
    }
    if path.endswith("payments"):
        body = {k: body[k] for k in ("customer", "method", "amount", "currency")}
    else:
        body.pop("method"), body.pop("amount")

    response = client.post(path, body, format="json")

    messages = [e["message"] for e in assert_problem(response, 400, field)["errors"] if e["field"] == field]
    assert messages == [message]


def test_illegal_transition_names_statuses_as_clients_write_them(client, issued_invoice):
    response = client.post(f"/api/v1/invoices/{issued_invoice.pk}/issue", {}, format="json")

    body = assert_problem(response, 409)
    assert "payment_due" in body["detail"] and "InvoiceStatus" not in response.content.decode()


def test_nul_in_the_url_is_a_complete_problem_naming_the_url(client):
    assert_problem(client.get("/api/v1/customers?externalRef=a%00b"), 400, "url")


# --- Headers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tenant", ["acme\x00", "a" * 10_000, "acme' OR '1'='1"], ids=["nul", "10000-chars", "quote"]
)
def test_x_tenant_that_is_no_slug_is_400_naming_the_header(client, tenant):
    response = client.get("/api/v1/customers", HTTP_X_TENANT=tenant)

    assert_problem(response, 400, "X-Tenant")
