"""Reading PostgreSQL's answer to a refused write."""

from django.db import DatabaseError


def violated_constraint(exc: DatabaseError) -> str | None:
    """The name of the constraint a write broke (a unique key, a CHECK), or None."""
    return getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
