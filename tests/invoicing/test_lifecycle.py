"""The invoice transition table, and that services and the API obey it."""

import itertools

import pytest

from core.errors import IllegalTransition, ValidationFailed
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


# --- Adjustments: a credit never takes an open invoice below zero; one adjustment per key ---------
def _issued(tenant_a, actor, amount="100.00"):
    from decimal import Decimal

    from tests.factories import CustomerFactory

    customer = CustomerFactory(tenant=tenant_a.tenant)
    draft = services.invoice_create_draft(
        tenant=tenant_a.tenant,
        actor=actor,
        customer=customer,
        lines=[services.DraftLine(description="Navigation fee", quantity=Decimal(1), unit_amount=Decimal(amount))],
    )
    return services.invoice_issue(invoice=draft, actor=actor)


@pytest.mark.django_db
def test_credit_beyond_what_is_unpaid_is_refused_naming_amount_and_writes_nothing(
    tenant_a, actor, django_capture_on_commit_callbacks
):
    from decimal import Decimal

    from invoicing.models import InvoiceAdjustment

    with django_capture_on_commit_callbacks(execute=False):
        invoice = _issued(tenant_a, actor)
    services.invoice_apply_settlement(invoice=invoice, actor=actor, amount=Decimal("80.00"), reason="bank")
    item = invoice.items.get()

    with pytest.raises(ValidationFailed) as refused:
        services.invoice_adjust(
            invoice=invoice, actor=actor, type="credit", amount=Decimal("50.00"), reason="goodwill",
            source="api", idempotency_key="k1", invoice_item=item,
        )

    assert (refused.value.status, refused.value.code, refused.value.field) == (400, "credit-exceeds-balance", "amount")
    assert refused.value.extra["maximum"] == "20.0000"
    invoice.refresh_from_db()
    item.refresh_from_db()
    assert (invoice.balance, invoice.amount_credited, item.available_to_credit_amount) == (Decimal("20"), 0, Decimal("100"))
    assert not InvoiceAdjustment.objects.exists()
    # what is unpaid may be credited
    services.invoice_adjust(
        invoice=invoice, actor=actor, type="credit", amount=Decimal("20.00"), reason="goodwill",
        source="api", idempotency_key="k2", invoice_item=item,
    )
    invoice.refresh_from_db()
    assert (invoice.balance, invoice.amount_credited) == (Decimal("0"), Decimal("20"))


@pytest.mark.django_db
def test_database_refuses_an_open_invoice_with_a_negative_balance(tenant_a, actor, django_capture_on_commit_callbacks):
    from django.db import IntegrityError, transaction
    from django.db.models import F

    from invoicing.models import Invoice

    with django_capture_on_commit_callbacks(execute=False):
        invoice = _issued(tenant_a, actor)

    with pytest.raises(IntegrityError, match="invoice_open_balance_non_negative"), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(amount_paid=150, balance=F("total") - 150)
    # a settled or cancelled one is not an open invoice: the check leaves it alone
    Invoice.objects.filter(pk=invoice.pk).update(status="cancelled", amount_credited=150, balance=F("total") - 150)


@pytest.mark.django_db(transaction=True)
def test_ten_racing_adjustments_with_one_idempotency_key_all_get_the_one_adjustment(tenant_a, actor):
    import threading
    from decimal import Decimal

    from django.db import connection

    from invoicing.models import Invoice, InvoiceAdjustment

    invoice = _issued(tenant_a, actor)
    item = invoice.items.get()
    barrier = threading.Barrier(10)
    results = [None] * 10

    def credit(i):
        try:
            barrier.wait()
            results[i] = services.invoice_adjust(
                invoice=invoice, actor=actor, type="credit", amount=Decimal("10.00"), reason="goodwill",
                source="api", idempotency_key="same-key", invoice_item=item,
            )
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=credit, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {type(r) for r in results} == {InvoiceAdjustment}, results
    assert len({r.pk for r in results}) == 1
    assert InvoiceAdjustment.objects.count() == 1
    invoice = Invoice.objects.get(pk=invoice.pk)
    assert (invoice.amount_credited, invoice.balance) == (Decimal("10"), Decimal("90"))


@pytest.mark.django_db(transaction=True)
def test_racing_adjustments_with_one_key_on_two_invoices_make_one_adjustment(tenant_a, actor):
    import threading
    from decimal import Decimal

    from django.db import connection

    from invoicing.models import Invoice, InvoiceAdjustment

    invoices = [_issued(tenant_a, actor) for _ in range(2)]
    barrier = threading.Barrier(10)
    results = [None] * 10

    def credit(i):
        invoice = invoices[i % 2]
        try:
            barrier.wait()
            results[i] = services.invoice_adjust(
                invoice=invoice, actor=actor, type="credit", amount=Decimal("10.00"), reason="goodwill",
                source="api", idempotency_key="shared", invoice_item=invoice.items.get(),
            )
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=credit, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {type(r) for r in results} == {InvoiceAdjustment}, results
    assert len({r.pk for r in results}) == 1
    credited = sorted(Invoice.objects.filter(pk__in=[i.pk for i in invoices]).values_list("amount_credited", flat=True))
    assert credited == [Decimal("0"), Decimal("10")]
