"""The run row on a step's hot path: hand-written SQL, one round trip per statement.

A step of a journey costs what its round trips cost, and the ORM's query building would cost more
than the queries. So the statements a step sends are written out here, once:

- `insert` — a new run, attributing itself (starting a run, in autocommit, in one statement);
- `read` — the run, unlocked;
- `save_with_history` — a locked run's new state and the step's history row, in one statement;
- `advance_if_unchanged` — the same for a run nobody locked, only if the run is unchanged since it
  was read, attributing itself (the whole step, in autocommit, in one statement);
- `lock_if_unchanged` — lock the run if it is unchanged, and attribute the transaction.

"Unchanged" means `updated_at` and `attempt` are still what the step read: every write of the run
sets the first, and every attempt at a step counts in the second (so even two writes within one
tick of the clock are told apart).

A step's message may carry a `snapshot` of the run as its sender left it (`snapshot`/`from_snapshot`).
The snapshot is only ever used under the same proof, so a stale one costs a read, never a wrong write.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor
from django.utils import timezone

from core.actors import Actor
from core.attribution import attribution
from journeys.models import JourneyRun

_META = JourneyRun._meta
# The columns a step can change: what every statement here writes (the rest never changes after
# the run starts, so a snapshot need not carry it to write the row back).
STEP_FIELDS = [
    _META.get_field(name)
    for name in (
        "phase",
        "current_state",
        "waiting_for",
        "context",
        "output",
        "error",
        "lease_until",
        "dispatched_at",
        "attempt",
        "updated_at",
    )
]
_STEP_FIELD_NAMES = {f.attname for f in STEP_FIELDS}
_ALL_FIELDS = list(_META.concrete_fields)
_ALL_ATTNAMES = [f.attname for f in _ALL_FIELDS]
# What a snapshot carries besides the step fields: what a step function and routing read.
_IDENTITY_ATTNAMES = ("journey_id", "journey_name", "tenant_id", "subject_id", "started_by_id", "parent_id")
# A context larger than this (serialized) is not carried in messages: the step reads the row.
SNAPSHOT_MAX_CONTEXT = 8 * 1024

_INSERT_FIELDS = [f for f in _ALL_FIELDS if not f.primary_key]
_INSERT_SQL = (
    f"INSERT INTO journeys_journeyrun ({', '.join(f.column for f in _INSERT_FIELDS)})"  # noqa: S608
    f" SELECT {', '.join(['%s'] * len(_INSERT_FIELDS))} FROM (SELECT {{attribution}}) AS attribution RETURNING id"
)
_SET = ", ".join(f"{f.column} = %s" for f in STEP_FIELDS)
_HISTORY_COLUMNS = "run_id, state, attempt, started_at, finished_at, outcome, detail"
_READ_SQL = f"SELECT {', '.join(f.column for f in _ALL_FIELDS)} FROM journeys_journeyrun WHERE id = %s"  # noqa: S608
_SAVE_WITH_HISTORY_SQL = (
    f"WITH history AS (INSERT INTO journeys_journeystep ({_HISTORY_COLUMNS})"  # noqa: S608
    f" VALUES (%s, %s, %s, %s, %s, %s, %s)) UPDATE journeys_journeyrun SET {_SET} WHERE id = %s"
)
_ADVANCE_IF_UNCHANGED_SQL = (
    f"WITH advanced AS (UPDATE journeys_journeyrun SET {_SET}"  # noqa: S608
    " FROM (SELECT {attribution}{commit}) AS attribution"
    " WHERE id = %s AND phase = 'RUNNING' AND current_state = %s AND updated_at = %s AND attempt = %s"
    " RETURNING id),"
    f" history AS (INSERT INTO journeys_journeystep ({_HISTORY_COLUMNS})"
    " SELECT id, %s, %s, %s, %s, %s, '' FROM advanced)"
    " SELECT count(*) FROM advanced"
)
_LOCK_IF_UNCHANGED_SQL = (
    f"SELECT {', '.join(f.column for f in _ALL_FIELDS)}, {{attribution}} FROM journeys_journeyrun"  # noqa: S608
    " WHERE id = %s AND phase = 'RUNNING' AND current_state = %s AND updated_at = %s AND attempt = %s FOR UPDATE"
)


@contextlib.contextmanager
def _cursor() -> Iterator[Any]:
    """A Django cursor that binds parameters on the server, unlike Django's default cursor, so
    psycopg prepares a statement after a few runs (its prepare_threshold) and PostgreSQL stops
    parsing and planning the step's statements (~0.15 ms each). Django's wrappers (query logging,
    execute wrappers, error translation) apply as to any cursor."""
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = ServerBindingCursor(connection.connection)
    cursor = connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
    with cursor:
        yield cursor


@functools.cache
def _converters() -> list[tuple[int, list, Any]]:
    """(column index, converters, column) for the run's columns the database backend converts."""
    found = []
    for index, field in enumerate(_ALL_FIELDS):
        column = field.get_col(_META.db_table)
        converters = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if converters:
            found.append((index, converters, column))
    return found


def _from_row(row) -> JourneyRun:
    values = list(row[: len(_ALL_FIELDS)])
    for index, converters, column in _converters():
        for convert in converters:
            values[index] = convert(values[index], column, connection)
    return JourneyRun.from_db(connection.alias, _ALL_ATTNAMES, values)


def _values(run: JourneyRun, fields) -> list:
    return [f.get_db_prep_save(getattr(run, f.attname), connection) for f in fields]


def insert(run: JourneyRun, *, actor: Actor, reason: str) -> None:
    """INSERT a new run as run.save() would (created_at and updated_at now), attributed by the
    statement itself: the run's audit row says who started it without a transaction around it."""
    run.created_at = run.updated_at = timezone.now()
    select, attribution_params = attribution(actor=actor, reason=reason)
    with _cursor() as cursor:
        cursor.execute(
            _INSERT_SQL.format(attribution=select), [*_values(run, _INSERT_FIELDS), *attribution_params]
        )
        run.pk = cursor.fetchone()[0]
    run._state.adding = False
    run._state.db = connection.alias


def read(run_pk: int) -> JourneyRun | None:
    """The run as it is now, unlocked."""
    with _cursor() as cursor:
        cursor.execute(_READ_SQL, [run_pk])
        row = cursor.fetchone()
    return None if row is None else _from_row(row)


def save_with_history(
    run: JourneyRun,
    state: str,
    *,
    started_at: datetime,
    outcome: str,
    attempt: int,
    detail: str = "",
) -> None:
    """Write a locked run's step fields and insert the step's history row (finished now): one
    statement. The run's statement-level audit triggers fire as for run.save()."""
    run.updated_at = finished_at = timezone.now()
    with _cursor() as cursor:
        cursor.execute(
            _SAVE_WITH_HISTORY_SQL,
            [
                run.pk,
                state,
                attempt,
                started_at,
                finished_at,
                outcome,
                detail,
                *_values(run, STEP_FIELDS),
                run.pk,
            ],
        )


def advance_if_unchanged(
    run: JourneyRun,
    state: str,
    *,
    read_updated_at: datetime,
    read_attempt: int,
    started_at: datetime,
    outcome: str,
    attempt: int,
    actor: Actor,
    reason: str,
    flush: bool = True,
) -> bool:
    """`save_with_history` for a run nobody locked; False, writing nothing, if it changed meanwhile.

    flush=False commits without waiting for the WAL flush (synchronous_commit off, this statement
    only): PostgreSQL stays consistent, but a crash of PostgreSQL itself within ~0.6 s may undo the
    statement. Only for a step that changed nothing else: undone, it simply runs again (see
    engine._run_transactional).
    """
    run.updated_at = finished_at = timezone.now()
    select, attribution_params = attribution(actor=actor, reason=reason)
    commit = "" if flush else ", set_config('synchronous_commit', 'off', true) AS _no_flush"
    with _cursor() as cursor:
        cursor.execute(
            _ADVANCE_IF_UNCHANGED_SQL.format(attribution=select, commit=commit),
            [
                *_values(run, STEP_FIELDS),
                *attribution_params,
                run.pk,
                state,
                read_updated_at,
                read_attempt,
                state,
                attempt,
                started_at,
                finished_at,
                outcome,
            ],
        )
        return cursor.fetchone()[0] == 1


def lock_if_unchanged(
    run: JourneyRun, *, state: str, read_updated_at: datetime, read_attempt: int, actor: Actor, reason: str
) -> bool:
    """Lock the run row if it is still RUNNING at `state` and unchanged since read; attribute the
    transaction. Fills in what a snapshot-built `run` lacks (never the fields a step changes)."""
    select, attribution_params = attribution(actor=actor, reason=reason)
    with _cursor() as cursor:
        cursor.execute(
            _LOCK_IF_UNCHANGED_SQL.format(attribution=select),
            [*attribution_params, run.pk, state, read_updated_at, read_attempt],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    current = _from_row(row)
    for attname in _ALL_ATTNAMES:
        if attname not in _STEP_FIELD_NAMES:
            setattr(run, attname, getattr(current, attname))
    return True


# --- Snapshots carried in step messages -----------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


# What a snapshot carries: what a step function and routing read, and every step field (so the
# one-statement record can write the row back). JSON fields travel as text, datetimes in ISO 8601:
# (encode, decode) per attribute, the rest as they are.
_SNAPSHOT_ATTNAMES = (*_IDENTITY_ATTNAMES, *(f.attname for f in STEP_FIELDS))
_CODECS = {
    name: (functools.partial(json.dumps, cls=_META.get_field(name).encoder), json.loads)
    for name in ("context", "output", "error")
}
_CODECS.update(dict.fromkeys(("lease_until", "dispatched_at", "updated_at"), (_iso, _from_iso)))


def _same(value: Any) -> Any:
    return value


_PLAIN = (_same, _same)


def snapshot(run: JourneyRun) -> dict[str, Any] | None:
    """What a step message carries so the step need not read the run: the run as just written.

    None when the context is too large to carry.
    """
    data = {name: _CODECS.get(name, _PLAIN)[0](getattr(run, name)) for name in _SNAPSHOT_ATTNAMES}
    return None if len(data["context"]) > SNAPSHOT_MAX_CONTEXT else data


def from_snapshot(run_pk: int, data: dict[str, Any]) -> JourneyRun:
    """The run a snapshot describes: its identity and step fields; the rest None until a lock
    reads them (lock_if_unchanged)."""
    values = [
        run_pk if field.primary_key else _CODECS.get(field.attname, _PLAIN)[1](data.get(field.attname))
        for field in _ALL_FIELDS
    ]
    return JourneyRun.from_db(connection.alias, _ALL_ATTNAMES, values)
