"""Invoicing rules that a Python path and a set-based SQL path both apply, each defined once here.

- An invoice number is `PREFIX-YEAR-SEQUENCE`, the sequence zero-padded to INVOICE_SEQUENCE_WIDTH
  digits and never cut: the 1,000,000th invoice of a year is ACME-2026-1000000.
- An invoice is due its tenant's payment terms (whole days) after its issue date. Every path
  (one invoice, the monthly batch, consolidation) computes it here in Python and hands it to SQL as
  a parameter; no statement computes it itself.

The SQL builders return expressions over the caller's SQL expressions (column names, %(name)s
parameters), so a set-based statement writes the rule the way the Python function computes it.
tests/invoicing/test_one_rule.py checks both sides agree on generated inputs in PostgreSQL.
"""

from __future__ import annotations

from datetime import date, timedelta

# ACME-2026-000042: six digits sort and read well for a year's invoices; more digits are kept whole.
INVOICE_SEQUENCE_WIDTH = 6


def padded(sequence: int, width: int) -> str:
    """`sequence` in decimal, zero-padded to at least `width` digits (never truncated)."""
    return f"{sequence:0{width}d}"


def padded_sql(sequence: str, width: int) -> str:
    """SQL twin of padded(): lpad alone would cut a longer number down to `width` digits."""
    text = f"({sequence})::text"
    return f"lpad({text}, greatest({int(width)}, length({text})), '0')"


def invoice_number(prefix: str, year: int, sequence: int) -> str:
    """The number of the `sequence`th invoice a tenant with `prefix` issues in `year`."""
    return f"{prefix}-{year}-{padded(sequence, INVOICE_SEQUENCE_WIDTH)}"


def invoice_number_sql(prefix: str, year: str, sequence: str) -> str:
    """SQL twin of invoice_number() over SQL expressions for the prefix, year and sequence."""
    return f"{prefix} || '-' || ({year})::text || '-' || {padded_sql(sequence, INVOICE_SEQUENCE_WIDTH)}"


def payment_due_date(issue_date: date, payment_terms_days: int) -> date:
    """The issue date plus the payment terms; OverflowError past 9999-12-31."""
    return issue_date + timedelta(days=payment_terms_days)
