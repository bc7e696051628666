"""The invoice transition table, and that services and the API obey it."""

import itertools

import pytest

from core.errors import IllegalTransition
from invoicing import services
from invoicing.lifecycle import INVOICE_TRANSITIONS
from invoicing.lifecycle import InvoiceStatus as S

ALLOWED = {
    (S.DRAFT, S.PAYMENT_DUE),
    (S.DRAFT, S.CANCELLED),
    (S.PAYMENT_DUE, S.PAID),
    (S.PAYMENT_DUE, S.OVERDUE),
    (S.PAYMENT_DUE, S.PARTIALLY_PAID),
    (S.PAYMENT_DUE, S.CANCELLED),
    (S.PARTIALLY_PAID, S.PAID),
    (S.PARTIALLY_PAID, S.OVERDUE),
    (S.PARTIALLY_PAID, S.CANCELLED),
    (S.OVERDUE, S.PAID),
    (S.OVERDUE, S.PARTIALLY_PAID),
    (S.OVERDUE, S.CANCELLED),
    (S.OVERDUE, S.WRITTEN_OFF),
}
ALL_PAIRS = list(itertools.product(S.values, S.values))


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_invoice_transition_passes(current, target):
    INVOICE_TRANSITIONS.check(current, target)


@pytest.mark.parametrize(("current", "target"), [p for p in ALL_PAIRS if p not in ALLOWED])
def test_refused_invoice_transition_raises_with_allowed_next_states(current, target):
    with pytest.raises(IllegalTransition) as caught:
        INVOICE_TRANSITIONS.check(current, target)
    assert caught.value.allowed == sorted(t for c, t in ALLOWED if c == current)


@pytest.mark.parametrize("terminal", [S.PAID, S.CANCELLED, S.WRITTEN_OFF])
def test_paid_cancelled_and_written_off_are_terminal(terminal):
    assert INVOICE_TRANSITIONS.is_terminal(terminal)


def test_issuing_a_cancelled_invoice_raises(draft_invoice, actor):
    services.invoice_cancel(invoice=draft_invoice, actor=actor, reason="duplicate")
    with pytest.raises(IllegalTransition):
        services.invoice_issue(invoice=draft_invoice, actor=actor)


def test_api_answers_409_with_allowed_next_states_for_illegal_transition(api, draft_invoice, actor):
    services.invoice_cancel(invoice=draft_invoice, actor=actor, reason="duplicate")

    response = api.post(f"/api/v1/invoices/{draft_invoice.pk}/issue", {}, format="json")

    assert response.status_code == 409
    body = response.json()
    assert response["Content-Type"].startswith("application/problem+json")
    assert body["code"] == "illegal-transition"
    assert body["currentStatus"] == "cancelled"
    assert body["allowedNextStatuses"] == []


def test_api_cancel_of_paid_like_terminal_lists_no_next_state_and_changes_nothing(api, issued_invoice, actor):
    services.invoice_cancel(invoice=issued_invoice, actor=actor, reason="customer went away")

    response = api.post(f"/api/v1/invoices/{issued_invoice.pk}/cancel", {"reason": "again"}, format="json")

    assert response.status_code == 409
    issued_invoice.refresh_from_db()
    assert issued_invoice.status == S.CANCELLED
