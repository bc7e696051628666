"""Form fields the admin shares: amounts in plain decimal notation, as the API takes them."""

from django import forms
from django.core.exceptions import ValidationError

from core import money


class PlainDecimalField(forms.DecimalField):
    """forms.DecimalField reads "1_000", "1e3" and "１００" (Decimal() does); an amount typed into the
    admin is a sign, ASCII digits, a point and digits, like an amount sent to the API."""

    def to_python(self, value):
        if isinstance(value, str) and value.strip() and not money.is_plain_decimal(value.strip()):
            raise ValidationError("Enter a plain decimal number such as 1234.56.", code="invalid")
        return super().to_python(value)
