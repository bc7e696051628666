"""Serializer building blocks shared by every app's API."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from core import money


class StrictSerializerMixin:
    """Unknown fields answer 400 naming them, instead of being silently dropped."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            known = set(self.fields)
            unknown = sorted(str(key) for key in data if key not in known)
            if unknown:
                raise serializers.ValidationError(
                    {key: ["Unknown field."] for key in unknown}, code="unknown_field"
                )
        return super().to_internal_value(data)


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
    """A money amount: a decimal string (or JSON number, read exactly), never negative by default.

    Its places are checked against the currency in the serializer's validate() via check_amounts().
    """

    def __init__(self, *, allow_negative: bool = False, positive: bool = False, **kwargs):
        kwargs.setdefault("max_digits", money.AMOUNT_MAX_DIGITS)
        kwargs.setdefault("decimal_places", money.AMOUNT_DECIMAL_PLACES)
        if positive:
            kwargs.setdefault("min_value", Decimal("0").next_plus())
        elif not allow_negative:
            kwargs.setdefault("min_value", Decimal("0"))
        kwargs.setdefault("coerce_to_string", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, float):
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
        if "\\u0000" in _dump(value) or "\x00" in _dump(value):
            self.fail("nul")
        return value


def _dump(value) -> str:
    import json

    return json.dumps(value, default=str)


class TenantScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A reference to one of the caller's own records; another tenant's id is 'does not exist'."""

    def get_queryset(self):
        request = self.context["request"]
        return super().get_queryset().filter(tenant=request.tenant)
