"""Shared by the one-rule property tests: evaluate a SQL builder's expression in PostgreSQL."""

from __future__ import annotations

from django.db import connection
from hypothesis import HealthCheck, settings

# Each example is one SELECT on the test database: a few hundred cost well under a second.
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def select(expression: str, params):
    """The value of one SQL `expression` (a builder's output, constant) with `params` bound."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {expression}", params)  # noqa: S608 - the builders' output, constant
        return cursor.fetchone()[0]
