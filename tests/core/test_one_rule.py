"""The one rounding rule, written twice (core.money's Python and its SQL builders for set-based
statements), property-tested in the real PostgreSQL: both sides agree on generated amounts in every
invoiceable currency, half-way cases and negatives included."""

from __future__ import annotations

from decimal import Decimal

import moneyed
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.money import (
    AMOUNT_LIMIT,
    RATE_DECIMAL_PLACES,
    UNIT_AMOUNT_DECIMAL_PLACES,
    get_currency,
    is_currency,
    line_amount,
    line_amount_sql,
    quantize_money,
    round_sql,
    tax_amount,
    tax_amount_sql,
)
from tests.one_rule import PROPERTY, select

CURRENCIES = sorted(code for code in moneyed.CURRENCIES if is_currency(code))



def _amounts(max_places: int = 8):
    """Amounts an amount column holds, with more places than any currency has."""
    return st.integers(min_value=0, max_value=max_places).flatmap(
        lambda places: st.decimals(
            min_value=-AMOUNT_LIMIT + 1, max_value=AMOUNT_LIMIT - 1, places=places, allow_nan=False, allow_infinity=False
        )
    )


@st.composite
def _half_way(draw):
    """x.5 of a currency's minor unit, either sign: where half-up and the other modes differ."""
    code = draw(st.sampled_from(CURRENCIES))
    quantum = get_currency(code).quantum
    units = draw(st.integers(min_value=-(10**15), max_value=10**15))
    return units * quantum + quantum / 2 * (1 if units >= 0 else -1), code


def test_every_minor_unit_is_generated():
    assert {get_currency(code).minor_units for code in CURRENCIES} >= {0, 2, 3}


@pytest.mark.django_db
@PROPERTY
@given(amount=_amounts(), code=st.sampled_from(CURRENCIES))
@example(amount=Decimal("0.005"), code="EUR")
@example(amount=Decimal("-0.005"), code="EUR")
@example(amount=Decimal("-2.5"), code="JPY")
@example(amount=Decimal("1.0005"), code="KWD")
def test_sql_rounding_agrees_with_quantize_money(amount, code):
    places = get_currency(code).minor_units
    assert select(round_sql("%s::numeric", "%s"), [amount, places]) == quantize_money(amount, code)


@pytest.mark.django_db
@PROPERTY
@given(case=_half_way())
def test_sql_rounding_agrees_on_half_way_amounts(case):
    amount, code = case
    places = get_currency(code).minor_units
    assert select(round_sql("%s::numeric", "%s"), [amount, places]) == quantize_money(amount, code)


@pytest.mark.django_db
@PROPERTY
@given(
    quantity=st.decimals(min_value=-(10**6), max_value=10**6, places=6, allow_nan=False, allow_infinity=False),
    unit_amount=st.decimals(
        min_value=-(10**9), max_value=10**9, places=UNIT_AMOUNT_DECIMAL_PLACES, allow_nan=False, allow_infinity=False
    ),
    rate=st.decimals(min_value=0, max_value=1, places=RATE_DECIMAL_PLACES, allow_nan=False, allow_infinity=False)
    | st.none(),
    code=st.sampled_from(CURRENCIES),
)
@example(quantity=Decimal("3"), unit_amount=Decimal("0.3335"), rate=Decimal("0.19"), code="EUR")
@example(quantity=Decimal("1"), unit_amount=Decimal("10.50"), rate=Decimal("0.19"), code="EUR")
def test_sql_line_and_tax_agree_with_line_amount_and_tax_amount(quantity, unit_amount, rate, code):
    places = get_currency(code).minor_units
    amount = line_amount(quantity, unit_amount, code)
    assert select(line_amount_sql("%s::numeric", "%s::numeric", "%s"), [quantity, unit_amount, places]) == amount
    tax = tax_amount(amount, rate, code) if rate else Decimal(0)
    assert select(tax_amount_sql("%s::numeric", "%s::numeric", "%s"), [amount, rate, places]) == tax
