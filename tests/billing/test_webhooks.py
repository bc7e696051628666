"""Payment-rail webhooks: signatures (valid, rotated, altered, wrong, missing, stale, future),
replays, out-of-order events, and a completed payment that still does not pay its invoice."""

import json
import time

import pytest

from billing.models import WebhookEvent
from billing.webhooks import SIGNATURE_HEADER, sign
from tests.factories import PaymentFactory, PaymentProviderFactory

URL = "/api/v1/webhooks/payments/{}"


@pytest.fixture
def provider(tenant_a):
    return PaymentProviderFactory(tenant=tenant_a.tenant, slug="cardrail", signing_secret="whsec_new")


@pytest.fixture
def payment(customer):
    return PaymentFactory(customer=customer, rail_transaction_id="pi_42")


def _event(event_id="evt_1", type_="payment.completed", rail="pi_42"):
    return json.dumps({"id": event_id, "type": type_, "data": {"railTransactionId": rail}}).encode()


def _post(client, body, *, secrets=("whsec_new",), timestamp=None, header=None, slug="cardrail"):
    timestamp = int(time.time()) if timestamp is None else timestamp
    if header is None:
        header = f"t={timestamp}," + ",".join(
            f"v1={sign(secret=s, timestamp=timestamp, body=body)}" for s in secrets
        )
    extra = {f"HTTP_{SIGNATURE_HEADER.upper().replace('-', '_')}": header} if header != "" else {}
    return client.post(URL.format(slug), data=body, content_type="application/json", **extra)


def test_valid_signature_completes_payment_but_not_its_invoice(client, provider, issued_invoice, customer):
    payment = PaymentFactory(customer=customer, invoice=issued_invoice, rail_transaction_id="pi_42")

    response = _post(client, _event())

    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "applied"
    payment.refresh_from_db()
    issued_invoice.refresh_from_db()
    assert payment.status == "completed" and payment.processing_at and payment.completed_at
    assert issued_invoice.status == "payment_due" and issued_invoice.amount_paid == 0


def test_rotated_secret_old_and_new_signatures_accepted(client, provider, payment):
    provider.previous_signing_secret = "whsec_old"
    provider.save()

    assert _post(client, _event("evt_a", "payment.processing"), secrets=("whsec_old",)).status_code == 200
    assert _post(client, _event("evt_b"), secrets=("whsec_unknown", "whsec_new")).status_code == 200

    payment.refresh_from_db()
    assert payment.status == "completed"


@pytest.mark.parametrize(
    "case",
    ["altered_body", "wrong_secret", "missing_header", "stale", "future", "garbled_header"],
)
def test_bad_signature_is_rejected_and_changes_nothing(client, provider, payment, case):
    body = _event()
    now = int(time.time())
    if case == "altered_body":
        header = f"t={now},v1={sign(secret='whsec_new', timestamp=now, body=body)}"
        body = body.replace(b"completed", b"failed")
        response = _post(client, body, header=header)
    elif case == "wrong_secret":
        response = _post(client, body, secrets=("whsec_wrong",))
    elif case == "missing_header":
        response = _post(client, body, header="")
    elif case == "stale":
        response = _post(client, body, timestamp=now - 301)
    elif case == "future":
        response = _post(client, body, timestamp=now + 301)
    else:
        response = _post(client, body, header="v1=abc")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid-signature"
    payment.refresh_from_db()
    assert payment.status == "pending"
    assert WebhookEvent.objects.count() == 0


def test_replayed_event_answers_200_and_changes_nothing(client, provider, payment):
    assert _post(client, _event("evt_r", "payment.processing")).status_code == 200
    payment.refresh_from_db()
    stamped = payment.processing_at

    replay = _post(client, _event("evt_r", "payment.processing"))

    assert replay.status_code == 200 and replay.json()["replayed"] is True
    payment.refresh_from_db()
    assert payment.processing_at == stamped
    assert WebhookEvent.objects.count() == 1


def test_out_of_order_event_never_moves_payment_backwards(client, provider, payment):
    _post(client, _event("evt_2", "payment.completed"))

    late = _post(client, _event("evt_1", "payment.processing"))
    failed = _post(client, _event("evt_3", "payment.failed"))

    assert (late.json()["outcome"], failed.json()["outcome"]) == ("stale", "stale")
    payment.refresh_from_db()
    assert payment.status == "completed"


def test_unknown_provider_is_404_and_unknown_payment_is_recorded(client, provider):
    assert _post(client, _event(), slug="nope").status_code == 404

    response = _post(client, _event(rail="pi_unknown"))

    assert response.status_code == 200 and response.json()["outcome"] == "unknown_payment"


def test_failed_event_records_reason(client, provider, payment):
    body = json.dumps(
        {
            "id": "evt_f",
            "type": "payment.failed",
            "data": {"railTransactionId": "pi_42", "failureReason": "card declined"},
        }
    ).encode()

    _post(client, body)

    payment.refresh_from_db()
    assert (payment.status, payment.failure_reason) == ("failed", "card declined")
