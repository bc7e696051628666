"""The invoice as a PDF (fpdf2, core fonts: no files to ship)."""

from __future__ import annotations

from collections.abc import Iterable

from fpdf import FPDF

from core.money import money_text
from invoicing.models import Invoice


def latin1(text) -> str:
    # core fonts are Latin-1; anything else is shown as '?', never an error
    return str(text).encode("latin-1", "replace").decode("latin-1")


def pdf_document(title: str, header: Iterable[str], *, title_size: int, title_height: int) -> FPDF:
    """An A4 PDF begun as every Ledgerflow document begins: a bold title, then header lines."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", title_size)
    pdf.cell(0, title_height, latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for line in header:
        pdf.cell(0, 6, latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    return pdf


def pdf_table_head(pdf: FPDF, columns: Iterable[tuple[str, int]], *, height: int) -> None:
    """A table's bold, underlined column titles, (title, width) each."""
    pdf.set_font("Helvetica", "B", 10)
    for title, width in columns:
        pdf.cell(width, height, title, border="B")
    pdf.ln()


def invoice_pdf(invoice: Invoice) -> bytes:
    """A one-document PDF of `invoice`: header, lines, taxes, totals, due date."""
    customer, tenant = invoice.customer, invoice.tenant
    header = (
        tenant.name,
        f"Bill to: {customer.name}",
        " ".join(p for p in (customer.address_line1, customer.postal_code, customer.city, customer.country) if p),
        f"Issue date: {invoice.issue_date or '-'}    Due date: {invoice.due_date or '-'}",
        f"Billing period: {invoice.period_start or '-'} to {invoice.period_end or '-'}",
    )
    pdf = pdf_document(f"Invoice {invoice.number or '(draft)'}", header, title_size=16, title_height=10)
    pdf_table_head(pdf, (("Description", 100), ("Qty", 20), ("Amount", 35), ("Tax", 35)), height=7)
    pdf.set_font("Helvetica", size=10)
    taxes = {t.invoice_item_id: t.amount for t in invoice.tax_items.all()}
    for item in invoice.items.all():
        pdf.cell(100, 6, latin1(item.description[:60]))
        pdf.cell(20, 6, f"{item.quantity.normalize():f}")
        pdf.cell(35, 6, money_text(item.amount, invoice.currency))
        pdf.cell(35, 6, money_text(taxes.get(item.pk, 0 * item.amount), invoice.currency), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    for label, amount in (("Subtotal", invoice.subtotal), ("Tax", invoice.tax_total), ("Total", invoice.total), ("Balance due", invoice.balance)):
        pdf.cell(155, 6, label, align="R")
        pdf.cell(35, 6, money_text(amount, invoice.currency), new_x="LMARGIN", new_y="NEXT")
    rf = invoice.creditor_reference
    if rf:
        # Printed in groups of four, as ISO 11649 recommends for reading it aloud or typing it.
        pdf.ln(4)
        pdf.set_font("Helvetica", size=10)
        grouped = " ".join(rf[i : i + 4] for i in range(0, len(rf), 4))
        pdf.cell(0, 6, f"Please quote the payment reference {grouped} with your transfer.", new_x="LMARGIN")
    return bytes(pdf.output())
