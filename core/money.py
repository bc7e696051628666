"""Money: Decimal amounts, ISO 4217 currencies and the one rounding rule.

Rounding rule (the only one in Ledgerflow): an amount is rounded to its currency's minor unit
with ROUND_HALF_UP — 0.005 EUR becomes 0.01 EUR, -0.005 EUR becomes -0.01 EUR — once per line,
when a quantity times a unit amount or a tax rate times a taxable amount is computed. Totals are
sums of already-rounded lines, so they never need rounding again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext

import moneyed

ROUNDING = ROUND_HALF_UP

# Database columns: 18 digits before the point is beyond any invoice; 4 places cover every ISO
# 4217 minor unit (at most 3 today) so a currency never needs a schema change.
AMOUNT_MAX_DIGITS = 22
AMOUNT_DECIMAL_PLACES = 4
# Unit prices may be finer than a minor unit (0.0025 EUR per call); line totals are not.
UNIT_AMOUNT_DECIMAL_PLACES = 6
UNIT_AMOUNT_MAX_DIGITS = 24
RATE_DECIMAL_PLACES = 6
RATE_MAX_DIGITS = 9
# Every amount (a line, a tax, a total) is below this: what an amount column holds before the point.
AMOUNT_LIMIT = Decimal(10) ** (AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES)
# Enough digits for a unit amount × quantity to be exact before its one rounding (24 + 18 digits);
# the default context (28) would round it first, or refuse to quantize it (InvalidOperation).
_EXACT = 48

# Funds, precious metals, testing and "no currency" codes are not invoiceable currencies.
_NOT_INVOICEABLE = {"XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"}


class UnknownCurrency(ValueError):
    pass


class AmountOutOfRange(ValueError):
    """An amount (a line, a tax, a total) that no amount column can hold."""


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    minor_units: int

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.minor_units)


def get_currency(code: str) -> Currency:
    """The ISO 4217 currency for `code`, or UnknownCurrency."""
    if not isinstance(code, str) or len(code) != 3 or not code.isalpha() or not code.isupper():
        raise UnknownCurrency(code)
    if code in _NOT_INVOICEABLE:
        raise UnknownCurrency(code)
    try:
        currency = moneyed.get_currency(code)
    except moneyed.CurrencyDoesNotExist as exc:
        raise UnknownCurrency(code) from exc
    sub_unit = currency.sub_unit or 1
    minor_units = len(str(sub_unit)) - 1
    return Currency(code=code, minor_units=minor_units)


def is_currency(code: str) -> bool:
    try:
        get_currency(code)
    except UnknownCurrency:
        return False
    return True


def to_decimal(value: Decimal | str | int) -> Decimal:
    """A Decimal from a string, int or Decimal; floats are refused because they are not exact."""
    if isinstance(value, float | bool):
        raise TypeError("money is never a float or a bool")
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


# What a client may write as an amount: an optional sign, ASCII digits, an optional point and
# digits. Decimal() also reads "1_000", "1e3", " 10 " and other scripts' digits ("１００").
PLAIN_DECIMAL = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
PLAIN_INTEGER = re.compile(r"[+-]?[0-9]+")


def is_plain_decimal(text: str) -> bool:
    return PLAIN_DECIMAL.fullmatch(text) is not None


def is_plain_integer(text: str) -> bool:
    return PLAIN_INTEGER.fullmatch(text) is not None


def parse_plain(text: str) -> Decimal:
    """A Decimal from plain decimal notation only (ValueError otherwise): what a form field sends."""
    if not isinstance(text, str) or not is_plain_decimal(text):
        raise ValueError(f"not a plain decimal number: {text!r}")
    return Decimal(text)


def plain(amount: Decimal | int) -> str:
    """An amount in plain notation for people: 1E+1 reads 10, 0E-8 reads 0."""
    text = format(Decimal(amount), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def quantize_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded to the currency's minor unit with ROUND_HALF_UP (the one rounding rule)."""
    return amount.quantize(get_currency(currency).quantum, rounding=ROUNDING)


# The same rule in set-based SQL. PostgreSQL's round(numeric, places) rounds a half away from zero,
# which is exactly ROUND_HALF_UP (tests/core/test_one_rule.py checks both agree on generated
# amounts in every currency); another ROUNDING would need another SQL expression here.
assert ROUNDING == ROUND_HALF_UP, "round_sql() implements ROUND_HALF_UP only"


def round_sql(expression: str, places: str | int) -> str:
    """SQL for `expression` (numeric) rounded to `places` decimal places by the one rounding rule:
    a currency's minor units for an amount, UNIT_AMOUNT_DECIMAL_PLACES for a unit amount."""
    return f"round({expression}, {places})"


def line_amount_sql(quantity: str, unit_amount: str, places: str | int) -> str:
    """SQL twin of line_amount(): quantity × unit amount, rounded once to `places` (the minor units)."""
    return round_sql(f"{quantity} * {unit_amount}", places)


def tax_amount_sql(taxable: str, rate: str, places: str | int) -> str:
    """SQL twin of tax_amount(): taxable × rate (no rate taxes nothing), rounded once to `places`."""
    return round_sql(f"{taxable} * coalesce({rate}, 0)", places)


def fits_currency(amount: Decimal, currency: str) -> bool:
    """True when `amount` has no more decimal places than the currency's minor unit."""
    exponent = amount.normalize().as_tuple().exponent
    return not isinstance(exponent, int) or -exponent <= get_currency(currency).minor_units


def check_in_range(amount: Decimal, *, what: str = "The amount") -> Decimal:
    """`amount` itself, or AmountOutOfRange when it is AMOUNT_LIMIT or more (either sign)."""
    if abs(amount) >= AMOUNT_LIMIT:
        raise AmountOutOfRange(f"{what} ({plain(amount)}) must be less than {plain(AMOUNT_LIMIT)}.")
    return amount


def _product(a: Decimal, b: Decimal, currency: str, what: str) -> Decimal:
    with localcontext() as exact:
        exact.prec = _EXACT
        return check_in_range(quantize_money(a * b, currency), what=what)


def line_amount(quantity: Decimal, unit_amount: Decimal, currency: str) -> Decimal:
    """Quantity × unit amount, rounded once to the currency; AmountOutOfRange if too large."""
    return _product(quantity, unit_amount, currency, "quantity × unit amount")


def tax_amount(taxable: Decimal, rate: Decimal, currency: str) -> Decimal:
    """Tax on one line: taxable × rate (0.19 for 19 %), rounded once to the currency."""
    return _product(taxable, rate, currency, "The tax")


ZERO = Decimal("0")


def money_text(amount, currency: str) -> str:
    """An amount as a document prints it: its currency's minor units (100.00 EUR, 1500 JPY, 1.250 KWD)."""
    return f"{quantize_money(to_decimal(str(amount)), currency):f} {currency}"
