"""Amounts typed into the admin are plain decimal notation, as over the API: "4_0", "４０" are refused."""

import pytest

from audit.models import Event
from reconciliation.models import BankEntry, Reconciliation, ReconciliationSettings


@pytest.mark.parametrize("amount", ["4_0.00", "\uff14\uff10.00", "4e1"])
def test_admin_match_with_an_amount_not_in_plain_notation_matches_nothing(admin_client, books, amount):
    invoice = books.invoice("40.00")
    books.import_camt([{"amount": "40.00", "text": invoice.number, "txid": "M1"}])
    entry = BankEntry.objects.get()
    payment = books.payment("40.00", invoice=invoice)
    events = Event.objects.count()

    response = admin_client.post(
        f"/admin/reconciliation/bankentry/{entry.pk}/match/",
        {"invoice": invoice.pk, "payment": payment.pk, "amount": amount, "reason": "checked by phone"},
        follow=True,
    )

    assert b"a valid amount" in response.content
    invoice.refresh_from_db()
    assert invoice.status == "payment_due"
    assert Reconciliation.objects.count() == 0 and Event.objects.count() == events


def test_admin_tolerance_not_in_plain_notation_is_refused(admin_client, books):
    response = admin_client.post(
        "/admin/reconciliation/reconciliationsettings/add/",
        {
            "tenant": books.tenant.pk,
            "rules": "payment_reference",
            "amount_tolerances": '{"EUR": "0_05"}',
            "bank_entry_grace_days": 5,
        },
    )

    assert response.status_code == 200 and b"must be an amount such as" in response.content
    assert not ReconciliationSettings.objects.exists()
