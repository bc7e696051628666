"""`audited()`: a transaction that tells the audit triggers who acts and why.

The triggers (see audit/triggers.py) read these transaction-local settings, so every row change
in the transaction — ORM saves, queryset updates, bulk inserts, raw SQL — is attributed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import connection, transaction

from audit.actors import Actor

_SET_SQL = (
    "SELECT set_config('ledgerflow.actor_type', %s, true), set_config('ledgerflow.actor_id', %s, true),"
    " set_config('ledgerflow.actor_label', %s, true), set_config('ledgerflow.reason', %s, true)"
)
_GET_SQL = (
    "SELECT current_setting('ledgerflow.actor_type', true), current_setting('ledgerflow.actor_id', true),"
    " current_setting('ledgerflow.actor_label', true), current_setting('ledgerflow.reason', true)"
)


def _set(cursor, values) -> None:
    cursor.execute(_SET_SQL, [v or "" for v in values])


@contextlib.contextmanager
def audited(*, actor: Actor, reason: str = "") -> Iterator[None]:
    """An atomic block whose changes are recorded as made by `actor` for `reason`.

    A nested block attributes its own changes and restores the outer attribution on exit; the
    outermost block costs one extra statement (the settings vanish with its transaction).
    """
    nested = connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cursor:
            previous = None
            if nested:
                cursor.execute(_GET_SQL)
                previous = cursor.fetchone()
            _set(cursor, (actor.type, actor.id, actor.label, reason))
        yield
        if previous is not None:
            with connection.cursor() as cursor:
                _set(cursor, previous)


@contextlib.contextmanager
def audited_lock(*, actor: Actor, reason: str, model, pk) -> Iterator[Any]:
    """`audited()` whose first statement also locks and reads one row: `(row or None)`.

    The attribution settings ride on the `SELECT … FOR UPDATE` of the row, so a hot path (a journey
    step) pays one round trip for both. A missing row sets no attribution; nothing is changed then.
    """
    table, pk_column = model._meta.db_table, model._meta.pk.column
    sql = (
        f"SELECT t.*, set_config('ledgerflow.actor_type', %s, true) AS _audit_type,"  # noqa: S608 - names from the model
        f" set_config('ledgerflow.actor_id', %s, true) AS _audit_id,"
        f" set_config('ledgerflow.actor_label', %s, true) AS _audit_label,"
        f" set_config('ledgerflow.reason', %s, true) AS _audit_reason"
        f" FROM {connection.ops.quote_name(table)} t WHERE t.{connection.ops.quote_name(pk_column)} = %s FOR UPDATE"
    )
    nested = connection.in_atomic_block
    with transaction.atomic():
        previous = None
        if nested:
            with connection.cursor() as cursor:
                cursor.execute(_GET_SQL)
                previous = cursor.fetchone()
        params = [v or "" for v in (actor.type, actor.id, actor.label, reason)]
        row = next(iter(model.objects.raw(sql, [*params, pk])), None)
        yield row
        if previous is not None:
            with connection.cursor() as cursor:
                _set(cursor, previous)
