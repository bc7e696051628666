"""Invoicing rules (invoicing.rules) property-tested in the real PostgreSQL: the invoice number's SQL
builder agrees with its Python function, and the due date with PostgreSQL's own date arithmetic."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from invoicing.rules import invoice_number, invoice_number_sql, payment_due_date
from tests.one_rule import PROPERTY, select

# What a tenant may hold as its prefix: up to 16 characters of any text PostgreSQL stores.
PREFIXES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=16)



@pytest.mark.django_db
@PROPERTY
@given(
    prefix=PREFIXES,
    year=st.integers(min_value=1, max_value=9999),
    # the counter is a PositiveIntegerField: up to 2**31 - 1, far past six digits
    sequence=st.integers(min_value=1, max_value=2**31 - 1),
)
@example(prefix="ACME", year=2026, sequence=42)
@example(prefix="INV", year=2026, sequence=999_999)
@example(prefix="INV", year=2026, sequence=1_000_000)
@example(prefix="", year=999, sequence=1)
def test_sql_invoice_number_agrees_with_python(prefix, year, sequence):
    sql = select(
        invoice_number_sql("%(prefix)s", "%(year)s", "%(sequence)s::integer"),
        {"prefix": prefix, "year": year, "sequence": sequence},
    )
    assert sql == invoice_number(prefix, year, sequence)


def test_invoice_numbers_are_padded_to_six_digits_and_never_cut():
    assert invoice_number("ACME", 2026, 42) == "ACME-2026-000042"
    assert invoice_number("ACME", 2026, 1_234_567) == "ACME-2026-1234567"


@pytest.mark.django_db
@PROPERTY
@given(
    issued=st.dates(min_value=date(1, 1, 1), max_value=date(9998, 12, 31)),
    terms=st.integers(min_value=0, max_value=365),
)
@example(issued=date(2024, 2, 28), terms=1)  # leap day
@example(issued=date(2023, 2, 28), terms=1)
@example(issued=date(2026, 1, 31), terms=30)  # across a short month
@example(issued=date(2026, 12, 31), terms=0)
@example(issued=date(2026, 12, 31), terms=365)  # across the year end
@example(issued=date(2000, 2, 29), terms=365)
def test_sql_due_date_agrees_with_python(issued, terms):
    # PostgreSQL's date + integer (whole days) is what a statement or a report over due dates computes
    assert select("%s::date + %s::integer", [issued, terms]) == payment_due_date(issued, terms)
