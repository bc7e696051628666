"""Problem details read as sentences a person can act on."""

from invoicing.lifecycle import INVOICE_TRANSITIONS, InvoiceStatus


def test_an_illegal_transition_names_statuses_by_their_values():
    try:
        INVOICE_TRANSITIONS.check(InvoiceStatus.PAID, InvoiceStatus.PAYMENT_DUE)
    except Exception as refused:  # noqa: BLE001 - the assertion below names what is expected
        error = refused
    else:
        raise AssertionError("paid → payment_due was allowed")

    assert error.detail == "Invoice cannot move from 'paid' to 'payment_due'."
    assert (error.extra["currentStatus"], error.extra["requestedStatus"]) == ("paid", "payment_due")
    assert "InvoiceStatus" not in repr(error.extra)
