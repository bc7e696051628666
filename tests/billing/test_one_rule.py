"""Payment transitions are one rule (PAYMENT_TRANSITIONS, applied by billing.services): a rail's
webhook moves a payment exactly as the service does, and refuses what the service refuses."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from billing.lifecycle import PAYMENT_TRANSITIONS, PaymentStatus
from billing.services import payment_advance, payment_path, payment_transition
from billing.webhooks import EVENT_STATUS, SIGNATURE_HEADER, sign
from core.actors import Actor
from core.errors import IllegalTransition
from tests.factories import PaymentFactory, PaymentProviderFactory

ACTOR = Actor.system("tests")
URL = "/api/v1/webhooks/payments/cardrail"


def _post(client, *, event_id: str, event_type: str, rail: str):
    body = json.dumps(
        {"id": event_id, "type": event_type, "data": {"railTransactionId": rail, "failureReason": "card declined"}}
    ).encode()
    now = int(time.time())
    header = f"t={now},v1={sign(secret='whsec', timestamp=now, body=body)}"
    extra = {f"HTTP_{SIGNATURE_HEADER.upper().replace('-', '_')}": header}
    return client.post(URL, data=body, content_type="application/json", **extra)


def _stamps(payment) -> tuple:
    return (
        payment.status,
        payment.processing_at is not None,
        payment.completed_at is not None,
        payment.failed_at is not None,
        payment.failure_reason,
    )


def _payment_in(customer, status: str, rail: str):
    payment = PaymentFactory(customer=customer, rail_transaction_id=rail)
    for step in payment_path(PaymentStatus.PENDING, status) or []:
        payment = payment_transition(payment=payment, actor=ACTOR, status=step, reason="card declined")
    assert payment.status == status
    return payment


@pytest.mark.django_db
@pytest.mark.parametrize(("start", "event_type"), list(itertools.product(PaymentStatus.values, EVENT_STATUS)))
def test_a_webhook_moves_a_payment_exactly_as_the_service_does(client, tenant_a, customer, start, event_type):
    PaymentProviderFactory(tenant=tenant_a.tenant, slug="cardrail", signing_secret="whsec")
    by_rail = _payment_in(customer, start, "pi_rail")
    by_service = _payment_in(customer, start, "pi_service")
    target = EVENT_STATUS[event_type]

    response = _post(client, event_id="evt_1", event_type=event_type, rail="pi_rail")
    moved = payment_advance(payment=by_service, actor=ACTOR, status=target, reason="x", failure_reason="card declined")

    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == ("stale" if moved is None else "applied")
    assert (moved is None) == (payment_path(start, target) is None)
    by_rail.refresh_from_db()
    by_service.refresh_from_db()
    assert _stamps(by_rail) == _stamps(by_service)


@pytest.mark.django_db
@pytest.mark.parametrize(("start", "target"), list(itertools.product(PaymentStatus.values, repeat=2)))
def test_the_service_refuses_exactly_what_the_transition_table_refuses(customer, start, target):
    payment = _payment_in(customer, start, "pi_1")
    if not PAYMENT_TRANSITIONS.is_allowed(start, target):
        with pytest.raises(IllegalTransition):
            payment_transition(payment=payment, actor=ACTOR, status=target)
    else:
        assert payment_transition(payment=payment, actor=ACTOR, status=target).status == target
