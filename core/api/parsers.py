"""camelCase JSON in, with numbers read as Decimal: a JSON number never becomes a float."""

from decimal import Decimal

from django.conf import settings
from djangorestframework_camel_case.settings import api_settings as camel_settings
from djangorestframework_camel_case.util import underscoreize
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core import jsonlimits


class CamelCaseDecimalJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            data = jsonlimits.loads(text, parse_float=Decimal, parse_constant=self._refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        return underscoreize(data, **camel_settings.JSON_UNDERSCOREIZE)

    @staticmethod
    def _refuse_constant(name):
        raise ValueError(f"{name} is not valid JSON")
