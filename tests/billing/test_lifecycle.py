"""The payment transition table and its enforcement through the service and the API."""

import itertools

import pytest

from billing import services
from billing.lifecycle import PAYMENT_TRANSITIONS
from billing.lifecycle import PaymentStatus as P
from core.errors import IllegalTransition
from tests.factories import PaymentFactory

ALLOWED = {
    (P.PENDING, P.PROCESSING),
    (P.PENDING, P.FAILED),
    (P.PROCESSING, P.COMPLETED),
    (P.PROCESSING, P.FAILED),
}


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_payment_transition_passes(current, target):
    PAYMENT_TRANSITIONS.check(current, target)


@pytest.mark.parametrize(
    ("current", "target"), [p for p in itertools.product(P.values, P.values) if p not in ALLOWED]
)
def test_refused_payment_transition_raises(current, target):
    with pytest.raises(IllegalTransition):
        PAYMENT_TRANSITIONS.check(current, target)


def test_completing_a_payment_stamps_completed_at(customer, actor):
    payment = PaymentFactory(customer=customer)
    services.payment_transition(payment=payment, actor=actor, status=P.PROCESSING)

    payment = services.payment_transition(payment=payment, actor=actor, status=P.COMPLETED)

    assert payment.status == P.COMPLETED
    assert payment.completed_at is not None


def test_completed_payment_cannot_move_backwards_over_api(api, customer, actor):
    payment = PaymentFactory(customer=customer)
    services.payment_transition(payment=payment, actor=actor, status=P.PROCESSING)
    services.payment_transition(payment=payment, actor=actor, status=P.COMPLETED)

    response = api.post(f"/api/v1/payments/{payment.pk}/transition", {"status": "processing"}, format="json")

    assert response.status_code == 409
    assert response.json()["allowedNextStatuses"] == []
    payment.refresh_from_db()
    assert payment.status == P.COMPLETED


def test_completed_payment_does_not_mark_its_invoice_paid(issued_invoice, actor):
    payment = PaymentFactory(
        customer=issued_invoice.customer, invoice=issued_invoice, amount=issued_invoice.total
    )
    services.payment_transition(payment=payment, actor=actor, status=P.PROCESSING)
    services.payment_transition(payment=payment, actor=actor, status=P.COMPLETED)

    issued_invoice.refresh_from_db()
    assert issued_invoice.status == "payment_due"
    assert issued_invoice.amount_paid == 0
