"""The one rounding rule and currency minor units."""

from decimal import Decimal

import pytest

from core import money


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.005", "EUR", "0.01"),
        ("0.004", "EUR", "0.00"),
        ("-0.005", "EUR", "-0.01"),
        ("2.675", "EUR", "2.68"),
        ("0.5", "JPY", "1"),
        ("1.5", "JPY", "2"),
        ("1.0005", "KWD", "1.001"),
    ],
)
def test_quantize_money_rounds_half_up_to_the_minor_unit(amount, currency, expected):
    assert money.quantize_money(Decimal(amount), currency) == Decimal(expected)
    assert str(money.quantize_money(Decimal(amount), currency)) == expected


def test_line_amount_rounds_once_per_line():
    # 3 × 0.3335 = 1.0005 → 1.00; rounding the unit first would give 3 × 0.33 = 0.99.
    assert money.line_amount(Decimal("3"), Decimal("0.3335"), "EUR") == Decimal("1.00")


def test_tax_amount_rounds_half_up():
    assert money.tax_amount(Decimal("10.50"), Decimal("0.19"), "EUR") == Decimal("2.00")  # 1.995 → 2.00


@pytest.mark.parametrize(("code", "places"), [("EUR", 2), ("USD", 2), ("JPY", 0), ("KWD", 3), ("BHD", 3)])
def test_currency_minor_units(code, places):
    assert money.get_currency(code).minor_units == places


@pytest.mark.parametrize("code", ["eur", "EURO", "XXX", "ZZZ", "", "E1R", "XAU"])
def test_unknown_or_non_invoiceable_currency_is_refused(code):
    assert not money.is_currency(code)


@pytest.mark.parametrize(
    ("amount", "currency", "fits"),
    [
        ("1.23", "EUR", True),
        ("1.234", "EUR", False),
        ("100", "JPY", True),
        ("1.5", "JPY", False),
        ("1.2300", "EUR", True),
    ],
)
def test_fits_currency(amount, currency, fits):
    assert money.fits_currency(Decimal(amount), currency) is fits


def test_floats_are_never_money():
    with pytest.raises(TypeError):
        money.to_decimal(0.1)
