"""Filter fields shared by the API's filtersets."""

from datetime import UTC

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField


class _UTCIsoDateTimeField(IsoDateTimeField):
    def to_python(self, value):
        parsed = super().to_python(value)
        # PostgreSQL refuses offsets beyond ±15:59 that ISO 8601 allows; UTC is what we store anyway.
        try:
            return parsed.astimezone(UTC) if parsed is not None and parsed.tzinfo else parsed
        except OverflowError:  # 9999-12-31T23:00-05:00 is in the year 10000 in UTC
            raise ValidationError("The instant is outside the calendar in UTC.", code="overflow") from None


class UTCIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 instant, compared in UTC."""

    field_class = _UTCIsoDateTimeField
