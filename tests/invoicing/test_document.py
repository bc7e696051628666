"""The invoice PDF a customer receives: amounts in their currency's minor units, and the payment
reference they are asked to quote."""

import re
import zlib
from decimal import Decimal

from invoicing import services as invoicing_services
from invoicing.documents import invoice_pdf


def pdf_text(pdf: bytes) -> bytes:
    return b"".join(zlib.decompress(s) for s in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S))


def test_whole_amounts_print_with_their_minor_units_and_the_reference_is_asked_for(tenant_a, customer, actor):
    draft = invoicing_services.invoice_create_draft(
        tenant=tenant_a.tenant,
        actor=actor,
        customer=customer,
        lines=[
            invoicing_services.DraftLine(
                description="Final month", quantity=Decimal("1"), unit_amount=Decimal("99"), tax_rate=Decimal("0")
            ),
            invoicing_services.DraftLine(
                description="Usage", quantity=Decimal("3"), unit_amount=Decimal("25.3"), tax_rate=Decimal("0")
            ),
        ],
    )
    invoice = invoicing_services.invoice_issue(invoice=draft, actor=actor)

    text = pdf_text(invoice_pdf(invoice))

    currency = invoice.currency.encode()
    assert b"99.00 " + currency in text  # was "99 EUR"
    assert b"75.90 " + currency in text
    assert b"174.90 " + currency in text  # total
    assert not re.search(rb"\b99 " + currency, text)
    assert invoice.creditor_reference[:4].encode() in text
