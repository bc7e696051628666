"""Manual matches racing for one payment and one bank entry: real threads, separate connections."""

import threading
from decimal import Decimal

import pytest
from django.db import connection

from core.errors import ApplicationError
from reconciliation import services
from reconciliation.models import BankEntry, Reconciliation

THREADS = 10


@pytest.mark.django_db(transaction=True)
def test_ten_threads_racing_manual_matches_of_one_payment_and_entry_one_wins_the_rest_get_409(books):
    # given one 50.00 payment, two 50.00 bank entries and two invoices of 50.00
    first, second = books.invoice("50.00"), books.invoice("50.00")
    books.import_camt(
        [
            {"amount": "50.00", "text": "transfer", "txid": "C1"},
            {"amount": "50.00", "text": "transfer", "txid": "C2"},
        ]
    )
    entries = list(BankEntry.objects.order_by("id"))
    payment = books.payment("50.00")
    barrier = threading.Barrier(THREADS)
    won, refused, other = [], [], []

    def match(n):
        entry, invoice = (entries[0], first) if n % 2 else (entries[1], second)
        try:
            barrier.wait()
            won.append(
                services.reconciliation_match_manual(
                    tenant=books.tenant,
                    actor=books.actor,
                    bank_entry=entry,
                    invoices=[(invoice, Decimal("50.00"))],
                    payment=payment,
                    reason=f"thread {n}",
                )
            )
        except ApplicationError as exc:
            refused.append(exc)
        except Exception as exc:  # noqa: BLE001 - reported below
            other.append(exc)
        finally:
            connection.close()

    # when ten threads match at the same moment, each on its own connection
    threads = [threading.Thread(target=match, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then exactly one wins, nine are refused with 409, and the payment backs 50.00 once
    assert other == []
    assert len(won) == 1
    assert len(refused) == THREADS - 1 and {exc.status for exc in refused} == {409}
    active = Reconciliation.objects.filter(payment=payment, status="reconciled")
    assert [r.amount for r in active] == [Decimal("50.00")]
    first.refresh_from_db()
    second.refresh_from_db()
    assert sorted([first.amount_paid, second.amount_paid]) == [0, Decimal("50.00")]
