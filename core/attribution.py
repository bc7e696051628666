"""`audited()`: a transaction that tells the audit triggers who acts and why.

The triggers (see audit/triggers.py) read these transaction-local settings, so every row change
in the transaction — ORM saves, queryset updates, bulk inserts, raw SQL — is attributed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connection, transaction

from core.actors import Actor

# A select list that attributes the current transaction. A hot path puts it into a statement it
# runs anyway (see `attribution()`), so attributing costs no round trip of its own.
_ATTRIBUTION_SQL = (
    "set_config('ledgerflow.actor_type', %s, true) AS _audit_type,"
    " set_config('ledgerflow.actor_id', %s, true) AS _audit_id,"
    " set_config('ledgerflow.actor_label', %s, true) AS _audit_label,"
    " set_config('ledgerflow.reason', %s, true) AS _audit_reason"
)
_SET_SQL = f"SELECT {_ATTRIBUTION_SQL}"
_GET_SQL = (
    "SELECT current_setting('ledgerflow.actor_type', true), current_setting('ledgerflow.actor_id', true),"
    " current_setting('ledgerflow.actor_label', true), current_setting('ledgerflow.reason', true)"
)


def _set(cursor, values) -> None:
    cursor.execute(_SET_SQL, [v or "" for v in values])


def attribution(*, actor: Actor, reason: str = "") -> tuple[str, list[str]]:
    """(select list, params) attributing the transaction of the statement that evaluates it.

    For a statement that must attribute itself without an `audited()` block around it — say, one
    autocommitted UPDATE — or a transaction's first statement, which can carry it for free. The
    settings are transaction-local: in autocommit they vanish with the statement.
    """
    return _ATTRIBUTION_SQL, [v or "" for v in (actor.type, actor.id, actor.label, reason)]


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
