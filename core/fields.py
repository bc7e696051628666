"""Model fields for money: every app's amounts, unit prices, rates and currencies are declared here.

The widths come from core.money, so a column holds every amount the money rules allow and nothing
the rounding rule cannot produce.
"""

from django.db import models

from core import money


def amount_field(**kwargs):
    """A money amount: exact decimal, wide enough for every ISO 4217 minor unit."""
    return models.DecimalField(
        max_digits=money.AMOUNT_MAX_DIGITS, decimal_places=money.AMOUNT_DECIMAL_PLACES, **kwargs
    )


def unit_amount_field(**kwargs):
    return models.DecimalField(
        max_digits=money.UNIT_AMOUNT_MAX_DIGITS, decimal_places=money.UNIT_AMOUNT_DECIMAL_PLACES, **kwargs
    )


def rate_field(**kwargs):
    # 0.190000 for 19 %; six places hold any published VAT or sales-tax rate.
    return models.DecimalField(
        max_digits=money.RATE_MAX_DIGITS, decimal_places=money.RATE_DECIMAL_PLACES, **kwargs
    )


def currency_field(**kwargs):
    """An ISO 4217 alphabetic code."""
    return models.CharField(max_length=3, **kwargs)
