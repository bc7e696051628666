"""Serializer building blocks shared by every app's API."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.fields import empty
from rest_framework.settings import api_settings

from core import jsonlimits, money


class StrictSerializerMixin:
    """Unknown fields answer 400 naming them, instead of being silently dropped, together with
    every other bad field of the same body (one answer lists them all)."""

    def run_validation(self, data=empty):
        unknown = sorted(str(key) for key in data if key not in self.fields) if isinstance(data, dict) else []
        unknown_errors = {key: [ErrorDetail("Unknown field.", code="unknown_field")] for key in unknown}
        try:
            value = super().run_validation(data)
        except serializers.ValidationError as exc:
            if not unknown_errors:
                raise
            detail = (
                exc.detail
                if isinstance(exc.detail, dict)
                else {api_settings.NON_FIELD_ERRORS_KEY: exc.detail}
            )
            raise serializers.ValidationError({**unknown_errors, **detail}) from exc
        if unknown_errors:
            raise serializers.ValidationError(unknown_errors)
        return value


class StrictSerializer(StrictSerializerMixin, serializers.Serializer):
    pass


class StrictModelSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    pass


class CurrencyField(serializers.CharField):
    default_error_messages = {"unknown_currency": "{value!r} is not an ISO 4217 currency code."}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 3)
        kwargs.setdefault("min_length", 3)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not money.is_currency(value):
            self.fail("unknown_currency", value=value)
        return value


class AmountField(serializers.DecimalField):
    """A money amount: a plain decimal string (or JSON number, read exactly), never negative by default.

    Strings are plain decimal notation only (money.PLAIN_DECIMAL: "1000.50", "-3"): "1_000",
    "1e3", " 10" and non-ASCII digits ("１００") are refused, though Python's Decimal() reads them.
    Its places are checked against the currency in the serializer's validate() via check_amounts().
    """

    default_error_messages = {
        "invalid": "Must be a plain decimal number such as 1234.56.",
        "not_positive": "Must be greater than 0.",
    }

    def __init__(self, *, allow_negative: bool = False, positive: bool = False, **kwargs):
        kwargs.setdefault("max_digits", money.AMOUNT_MAX_DIGITS)
        kwargs.setdefault("decimal_places", money.AMOUNT_DECIMAL_PLACES)
        self.positive = positive
        if positive or not allow_negative:
            # A positive amount's 0 itself is refused in to_internal_value (a readable message).
            kwargs.setdefault("min_value", Decimal("0"))
        kwargs.setdefault("coerce_to_string", True)
        # Bounds read as plain amounts ("at least 0", not "1E-1000026" or "1E+1").
        messages = kwargs.setdefault("error_messages", {})
        if kwargs.get("min_value") is not None:
            messages.setdefault("min_value", f"Must be at least {money.plain(kwargs['min_value'])}.")
        if kwargs.get("max_value") is not None:
            messages.setdefault("max_value", f"Must be at most {money.plain(kwargs['max_value'])}.")
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, float | bool):
            self.fail("invalid")
        if isinstance(data, str) and len(data) <= self.MAX_STRING_LENGTH and not money.is_plain_decimal(data):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if self.positive and value <= 0:
            self.fail("not_positive")
        return value


class PlainIntegerField(serializers.IntegerField):
    """A count: a JSON integer or a string of ASCII digits ("12"), not "1_2", "１２" or "12.0"."""

    def to_internal_value(self, data):
        if isinstance(data, bool | float) or (isinstance(data, str) and not money.is_plain_integer(data)):
            self.fail("invalid")
        return super().to_internal_value(data)


def UnitAmountField(**kwargs):  # noqa: N802 - reads as a field class
    kwargs.setdefault("max_digits", money.UNIT_AMOUNT_MAX_DIGITS)
    kwargs.setdefault("decimal_places", money.UNIT_AMOUNT_DECIMAL_PLACES)
    return AmountField(**kwargs)


def QuantityField(**kwargs):  # noqa: N802
    kwargs.setdefault("max_digits", 18)
    kwargs.setdefault("decimal_places", 6)
    kwargs.setdefault("positive", True)
    return AmountField(**kwargs)


def RateField(**kwargs):  # noqa: N802
    kwargs.setdefault("max_digits", money.RATE_MAX_DIGITS)
    kwargs.setdefault("decimal_places", money.RATE_DECIMAL_PLACES)
    kwargs.setdefault("max_value", Decimal("1"))
    return AmountField(**kwargs)


def check_amounts(attrs: dict, currency: str | None, *fields: str) -> None:
    """400 naming each amount with more decimal places than `currency` has."""
    if not currency or not money.is_currency(currency):
        return
    places = money.get_currency(currency).minor_units
    bad = {
        name: [f"{currency} amounts have at most {places} decimal places."]
        for name in fields
        if attrs.get(name) is not None and not money.fits_currency(attrs[name], currency)
    }
    if bad:
        raise serializers.ValidationError(bad, code="too_precise")


class JSONObjectField(serializers.JSONField):
    """Free-form details: a JSON object whose strings hold no NUL (PostgreSQL cannot store it)."""

    default_error_messages = {
        "not_object": "Must be a JSON object.",
        "nul": "Must not contain NUL characters.",
    }

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        if jsonlimits.has_nul(value):
            self.fail("nul")
        return value


class TenantScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A reference to one of the caller's own records; another tenant's id is 'does not exist'."""

    def get_queryset(self):
        request = self.context["request"]
        return super().get_queryset().filter(tenant=request.tenant)
