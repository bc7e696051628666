"""The consolidated invoice as a PDF (fpdf2, core fonts: text outside Latin-1 is replaced)."""

from __future__ import annotations

from consolidation.models import ConsolidatedInvoice
from core.money import money_text
from invoicing.documents import latin1, pdf_document, pdf_table_head

# The facts of a line shown in its row, in this order (any other keys follow by name).
_DETAIL_KEYS = ("aircraft", "route", "firs", "countries")


def details_text(details: list) -> str:
    """A source invoice's item details (aircraft, route, FIRs …) as one line of text per item."""
    parts = []
    for entry in details:
        if not isinstance(entry, dict) or not entry:
            continue
        keys = [k for k in _DETAIL_KEYS if k in entry] + sorted(k for k in entry if k not in _DETAIL_KEYS)
        values = []
        for key in keys:
            value = entry[key]
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            values.append(f"{key} {text}" if key not in ("aircraft", "route") else text)
        parts.append("; ".join(values))
    return " | ".join(parts)


def render(ci: ConsolidatedInvoice) -> bytes:
    """One page header, then a row per source invoice, then totals and aggregates."""
    header = (
        f"{ci.tenant.name} - to {ci.customer.name}",
        f"Billing period {ci.period_start.isoformat()} to {ci.period_end.isoformat()} ({ci.period_type.lower()})",
        f"Issued {ci.issue_date.isoformat()}, due {ci.due_date.isoformat()}",
    )
    pdf = pdf_document(f"Consolidated invoice {ci.number}", header, title_size=14, title_height=8)
    pdf_table_head(pdf, (("Date", 25), ("Invoice", 45), ("Amount", 35), ("Details", 0)), height=6)
    pdf.set_font("Helvetica", size=9)
    for line in ci.lines.all().order_by("invoice_date", "id"):
        pdf.cell(25, 5, line.invoice_date.isoformat())
        pdf.cell(45, 5, latin1(line.invoice_number))
        pdf.cell(35, 5, money_text(line.amount, line.currency))
        pdf.multi_cell(0, 5, latin1(details_text(line.details) or "-"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    for currency, amount in sorted(ci.totals_by_currency.items()):
        pdf.cell(0, 6, latin1(f"Total: {money_text(amount, currency)}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    pdf.cell(0, 5, f"{ci.invoice_count} invoices", new_x="LMARGIN", new_y="NEXT")
    if ci.firs:
        pdf.multi_cell(0, 5, latin1("FIRs crossed: " + ", ".join(ci.firs)), new_x="LMARGIN", new_y="NEXT")
    if ci.aircraft:
        pdf.multi_cell(0, 5, latin1("Aircraft: " + ", ".join(ci.aircraft)), new_x="LMARGIN", new_y="NEXT")
    if ci.countries:
        pdf.multi_cell(0, 5, latin1("Countries: " + ", ".join(ci.countries)), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
