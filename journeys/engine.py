"""The journey engine: start runs, execute steps exactly once in effect, pause and resume.

Invariants:
- The run row is the truth. A step task carries (run, state) and does nothing unless the run is
  still RUNNING at that state; it records the next state and enqueues what follows on commit.
- A step's work runs under the run row's lock, taken with the work's first query; work that sends
  no query is recorded by one statement that moves the run on only if it is unchanged. The message
  may carry the run as sent (runrow.snapshot), trusted only under that same check.
- A pause is a state of the row (an approval to decide, a timer row to fire), never a waiting task.
"""

from __future__ import annotations

import contextvars
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.db.models import Count, Exists, Q
from django.utils import timezone
from django.utils.module_loading import import_string
from psycopg.pq import TransactionStatus

from core.actors import Actor
from core.attribution import audited
from core.db import violated_constraint
from core.errors import ApplicationError, Conflict, NotFound
from journeys import leases, runrow
from journeys.definition import (
    Approval,
    Fail,
    Journey,
    Map,
    State,
    StepContext,
    Succeed,
    Task,
    Timer,
    get_journey,
)
from journeys.models import (
    JourneyApproval,
    JourneyChunk,
    JourneyRun,
    JourneyStep,
    JourneyTimer,
    Phase,
    WaitKind,
)

log = structlog.get_logger(__name__)

# A step enqueued this long ago and never picked up is presumed lost in transit (Redis restart).
STALL_AFTER = timedelta(seconds=60)


def stall_after() -> timedelta:
    """STALL_AFTER, unless settings change it (JOURNEY_STALL_AFTER_SECONDS)."""
    seconds = getattr(settings, "JOURNEY_STALL_AFTER_SECONDS", None)
    return STALL_AFTER if seconds is None else timedelta(seconds=seconds)


# Attempts before a failing step fails the whole run.
MAX_ATTEMPTS = 3
# Backoff between attempts of a failing step: short, because long countdowns are not durable.
RETRY_DELAYS = (2, 10, 30)


class PermissionDenied(ApplicationError):
    status = 403
    code = "permission-denied"
    title = "Permission denied"


class StepNotActive(Conflict):
    code = "step-not-active"
    title = "Step not active"


@dataclass(frozen=True, slots=True)
class StepResult:
    """What execute_step did: 'done', 'skipped' (duplicate), 'retry' (after delay) or 'failed'.

    `state_id`: the step it did (a segment's last step: the one to retry).
    """

    status: str
    retry_in: int | None = None
    state_id: str | None = None
    steps: int = 1  # how many steps a segment committed (or tried, the last one)


# --- Segments ------------------------------------------------------------------------------------
# A segment runs consecutive Task steps of one run on one queue in one Celery task, each step its
# own committed checkpoint. It hands the run back to the queue (enqueues the next step's message)
# at a pause, at a step on another queue, or after SEGMENT_SECONDS or SEGMENT_STEPS, so one run
# never holds a worker for long.
SEGMENT_SECONDS = 1.0
# Steps per segment at most: bounds a run of instant steps (routing on the context) all the same.
SEGMENT_STEPS = 50


def segment_limits() -> tuple[float, int]:
    """(seconds, steps) a segment may run, unless settings change them (JOURNEY_SEGMENT_SECONDS,
    JOURNEY_SEGMENT_STEPS; SEGMENT_STEPS=1 runs one step per task, as before segments)."""
    seconds = getattr(settings, "JOURNEY_SEGMENT_SECONDS", None)
    steps = getattr(settings, "JOURNEY_SEGMENT_STEPS", None)
    return (SEGMENT_SECONDS if seconds is None else float(seconds)), (
        SEGMENT_STEPS if steps is None else int(steps)
    )


def queue_of(task: Task) -> str:
    """The Celery queue a step's message goes to."""
    return task.queue or settings.CELERY_TASK_DEFAULT_QUEUE


@dataclass
class _Segment:
    """The segment a worker is running: which run, on which queue, until when."""

    run_pk: int
    queue: str
    deadline: float
    steps_left: int
    # (state, snapshot) of the step to run next in this task, set once its predecessor committed
    next: tuple[str, dict | None] | None = None
    closed: bool = False

    def accepts(self, run_pk: int, state: Task) -> bool:
        return (
            not self.closed
            and self.next is None
            and run_pk == self.run_pk
            and queue_of(state) == self.queue
            and self.steps_left > 0
            and time.monotonic() < self.deadline
        )


_SEGMENT: contextvars.ContextVar[_Segment | None] = contextvars.ContextVar("journey_segment", default=None)


def _journey(run: JourneyRun) -> Journey:
    journey = get_journey(run.journey_name)
    if journey is None:
        raise LookupError(f"no journey named {run.journey_name!r} is registered")
    return journey


def _step_context(run: JourneyRun, actor: Actor) -> StepContext:
    return StepContext(
        run_pk=run.pk,
        journey_id=run.journey_id,
        tenant_id=run.tenant_id,
        subject_id=run.subject_id,
        context=run.context,
        started_by_id=run.started_by_id,
        actor=actor,
        parent_pk=run.parent_id,
    )


def _send_step(run_pk: int, state: Task, seen: dict | None) -> None:
    from journeys.tasks import run_step

    args = [run_pk, state.id] if seen is None else [run_pk, state.id, seen]
    # argsrepr: logs and monitoring show the run and step, never the run's context
    options = {"argsrepr": repr([run_pk, state.id])}
    if state.queue:
        options["queue"] = state.queue
    run_step.apply_async(args=args, **options)


def _enqueue_step(run: JourneyRun, state: Task, *, with_snapshot: bool = True) -> None:
    """Send the step's message once the transaction commits (at once in autocommit): call it after
    saving the run. The message carries the run as saved, so the step need not read it.

    Inside a segment of this run, on the same queue and within its limits, the step runs next in
    this task instead, once the transaction committed (the predecessor's checkpoint).
    """
    seen = runrow.snapshot(run) if with_snapshot else None
    segment = _SEGMENT.get()
    if segment is not None and segment.accepts(run.pk, state):
        segment.steps_left -= 1

        def go_on(run_pk=run.pk) -> None:
            if segment.closed:  # committed after its segment ended (an outer transaction): send it
                _send_step(run_pk, state, seen)
            else:
                segment.next = (state.id, seen)

        transaction.on_commit(go_on)
        return
    transaction.on_commit(lambda run_pk=run.pk: _send_step(run_pk, state, seen))


def _enter(run: JourneyRun, journey: Journey, target: State, now: datetime) -> Task | None:
    """Put the (locked) run at `target` and arrange what happens there.

    The caller saves the run, then sends the returned task's message (if any) with _enqueue_step.
    """
    run.current_state = target.id
    run.attempt = 0
    run.lease_until = None
    follow = None
    if isinstance(target, Task | Map):  # a Map's first step splits its input (a message like a Task's)
        run.waiting_for = WaitKind.TASK
        run.dispatched_at = now
        follow = target
    elif isinstance(target, Approval):
        if (decided := _auto_decision(run, journey, target, now)) is not None:
            return _enter(run, journey, journey.state(target.route(decided)), now)
        run.waiting_for = WaitKind.APPROVAL
    elif isinstance(target, Timer):
        run.waiting_for = WaitKind.TIMER
        JourneyTimer.objects.create(run=run, state=target.id, due_at=target.due_at(run.context, now))
    elif isinstance(target, Succeed):
        run.waiting_for = WaitKind.NONE
        run.phase = Phase.SUCCEEDED
        run.output = target.output(run.context)
    elif isinstance(target, Fail):
        run.waiting_for = WaitKind.NONE
        run.phase = Phase.FAILED
        run.error = {"code": target.code, "reason": target.reason(run.context)}
    if run.phase != Phase.RUNNING and journey.on_finish is not None:
        journey.on_finish(run)
    return follow


def _auto_decision(run: JourneyRun, journey: Journey, state: Approval, now: datetime) -> str | None:
    """APPROVED when the tenant's ApprovalPolicy needs no person for this run's amounts (the state's
    policy names them), recorded on the run's context and timeline; None: the run waits."""
    from journeys.policies import approval_policy_decides

    if state.policy.amounts is None:
        return None
    amounts = state.policy.amounts(run.context) or {}
    mode = approval_policy_decides(tenant_id=run.tenant_id, journey_name=journey.name, totals_by_currency=amounts)
    if mode is None:
        return None
    run.context["approval"] = {
        "stepId": state.step_id,
        "decision": JourneyApproval.Decision.APPROVED,
        "comment": "",
        "decidedBy": None,
        "decidedAt": now.isoformat(),
        "auto": True,
        "policy": mode,
    }
    if run.pk is not None:
        _record(
            run,
            state.id,
            started_at=now,
            outcome=JourneyApproval.Decision.APPROVED,
            attempt=1,
            detail=f"approved by the tenant's approval policy ({mode}): no person needed",
        )
    log.info("journey.auto_approved", run=run.journey_id, step=state.step_id, policy=mode)
    return JourneyApproval.Decision.APPROVED


def _record(
    run: JourneyRun, state: str, *, started_at: datetime, outcome: str, attempt: int, detail: str = ""
) -> None:
    JourneyStep.objects.create(
        run=run,
        state=state,
        attempt=attempt,
        started_at=started_at,
        finished_at=timezone.now(),
        outcome=outcome,
        detail=detail,
    )


def _advance(
    run: JourneyRun, journey: Journey, state: State, outcome: str | None, *, started_at: datetime
) -> None:
    """Record the step's history row and move the (locked) run on: one statement for both."""
    attempt = max(run.attempt, 1)
    follow = _enter(run, journey, journey.state(state.route(outcome)), timezone.now())
    runrow.save_with_history(run, state.id, started_at=started_at, outcome=outcome or "ok", attempt=attempt)
    if follow is not None:
        _enqueue_step(run, follow)


# --- Starting ------------------------------------------------------------------------------------
def run_start(
    *,
    journey_name: str,
    tenant,
    actor: Actor,
    context: dict[str, Any],
    subject_id: str = "",
    started_by=None,
    dedupe_key: str | None = None,
    parent: JourneyRun | None = None,
    schedule=None,
    occurrence: int | None = None,
    start_at: str | None = None,
) -> tuple[JourneyRun, bool]:
    """Start a run at the journey's start state (or `start_at`); (run, created).

    With a dedupe_key the run starts once per (journey, tenant, key): a second call — another beat,
    a retry — returns the existing run.
    """
    journey = get_journey(journey_name)
    if journey is None:
        raise NotFound(f"No journey named {journey_name!r}.")
    reason = f"journey {journey_name} started"
    start = journey.state(start_at or journey.start)
    run = JourneyRun(
        journey_name=journey_name,
        tenant=tenant,
        subject_id=subject_id,
        context=context,
        started_by=started_by,
        dedupe_key=dedupe_key,
        parent=parent,
        schedule=schedule,
        occurrence=occurrence,
    )
    if dedupe_key is None and isinstance(start, Task) and not connection.in_atomic_block:
        # Nothing to look up and nothing but the run to write: one autocommitted statement.
        follow = _enter(run, journey, start, timezone.now())
        runrow.insert(run, actor=actor, reason=reason)
        _enqueue_step(run, follow)
    else:
        with audited(actor=actor, reason=reason):
            if dedupe_key is not None:
                existing = JourneyRun.objects.filter(
                    journey_name=journey_name, tenant=tenant, dedupe_key=dedupe_key
                ).first()
                if existing is not None:
                    return existing, False
            try:
                with transaction.atomic():
                    follow = _enter(run, journey, start, timezone.now())
                    run.save()
                    if follow is not None:
                        _enqueue_step(run, follow)
            except IntegrityError:
                if dedupe_key is None:
                    raise
                return JourneyRun.objects.get(
                    journey_name=journey_name, tenant=tenant, dedupe_key=dedupe_key
                ), False
    log.info("journey.started", journey=journey_name, run=run.journey_id, tenant=tenant.pk)
    return run, True


# --- Executing a step ----------------------------------------------------------------------------
class _StepMovedOn(Exception):  # noqa: N818 - a signal, not an error
    """The run left the step, or changed, after the step read it: this delivery is a duplicate."""


class _LockBeforeFirstQuery:
    """An execute wrapper around a transactional step's work.

    The step read its run without a lock (or took it from its message). Before the work's first
    query this sends one statement that locks the run row, checks the run is still RUNNING at the
    step and unchanged since the read, and attributes the transaction; from then on the work runs
    under the lock, as if the step had locked first. A run that changed makes every query raise
    _StepMovedOn, so the work and its transaction roll back.
    """

    def __init__(self, run: JourneyRun, *, actor: Actor, reason: str) -> None:
        self.run, self.state_id = run, run.current_state
        self.read_updated_at, self.read_attempt = run.updated_at, run.attempt
        self.actor, self.reason = actor, reason
        self.locked = False
        self.moved = False

    def __call__(self, execute, sql, params, many, context):
        if not self.locked:
            self.lock()
        if self.moved:
            raise _StepMovedOn
        return execute(sql, params, many, context)

    def lock(self) -> None:
        self.locked = True  # first: the lock's own query passes through this wrapper
        self.moved = not runrow.lock_if_unchanged(
            self.run,
            state=self.state_id,
            read_updated_at=self.read_updated_at,
            read_attempt=self.read_attempt,
            actor=self.actor,
            reason=self.reason,
        )

    def lock_if_bypassed(self) -> None:
        """Lock now if the work began the transaction without a query through Django's cursor
        (a raw COPY, say): its changes then commit only with the step's record, or roll back."""
        if not self.locked and connection.connection.info.transaction_status != TransactionStatus.IDLE:
            self.lock()


def _run_transactional(
    run: JourneyRun, journey: Journey, task: Task, *, actor: Actor, started_at: datetime
) -> bool:
    """Do a transactional step's work and record it in one transaction; False if the run changed.

    A step whose work queries runs under the run's lock, taken just before its first query. One
    that never queries (it routes on the context, say) costs one conditional statement in all.
    """
    reason = f"step {task.id}"
    guard = _LockBeforeFirstQuery(run, actor=actor, reason=reason)
    with transaction.atomic():
        with connection.execute_wrapper(guard):
            run.attempt += 1
            attempt = run.attempt
            outcome = task.fn(_step_context(run, actor))
            follow = _enter(run, journey, journey.state(task.route(outcome)), timezone.now())
        guard.lock_if_bypassed()
        if guard.moved:
            raise _StepMovedOn  # the work caught it: roll the work back all the same
        if guard.locked:
            runrow.save_with_history(
                run, task.id, started_at=started_at, outcome=outcome or "ok", attempt=attempt
            )
            if follow is not None:
                _enqueue_step(run, follow)
            return True
    # Nothing reached the database: the atomic block ended without a round trip. The step had no
    # effect but its record, so that record need not wait for the WAL flush: should PostgreSQL
    # crash before the flush, the run is back at this step and recovery runs it again, to the same
    # effect. Any later synchronous commit (a step that writes, a lease claim, a decision) flushes
    # it too. A run's end is flushed at once, so a client never sees a finished run un-finish.
    advanced = runrow.advance_if_unchanged(
        run,
        task.id,
        read_updated_at=guard.read_updated_at,
        read_attempt=guard.read_attempt,
        started_at=started_at,
        outcome=outcome or "ok",
        attempt=attempt,
        actor=actor,
        reason=reason,
        flush=run.phase != Phase.RUNNING,
    )
    if advanced and follow is not None:
        _enqueue_step(run, follow)
    return advanced


def _run_leased(run: JourneyRun, journey: Journey, task: Task, *, actor: Actor, started_at: datetime) -> bool:
    """Take a lease, do the (long, idempotent) work in its own transactions, then record it."""
    if not leases.claim(run.pk, task.id):
        return False
    run.refresh_from_db()
    with leases.Heartbeat(run.pk, task.id):
        outcome = task.fn(_step_context(run, actor))
    with audited(actor=actor, reason=f"step {task.id}"):
        locked = JourneyRun.objects.select_for_update().get(pk=run.pk)
        if locked.phase != Phase.RUNNING or locked.current_state != task.id:
            return False  # cancelled while the step worked
        locked.context = run.context
        _advance(locked, journey, task, outcome, started_at=started_at)
    return True


def execute_step(*, run_pk: int, state_id: str, actor: Actor, seen: dict | None = None) -> StepResult:
    """Run one step of one run, at most once in effect (see module docstring).

    `seen` is the snapshot the step's message carries (runrow.snapshot): the run as its sender left
    it, used instead of reading the run. If the run changed since (a retry after a failure, say),
    the step reads it and goes on.
    """
    started_at = timezone.now()
    if seen is not None:
        result = _execute(runrow.from_snapshot(run_pk, seen), state_id, actor=actor, started_at=started_at)
        if result is not None:
            return result
    result = _execute(runrow.read(run_pk), state_id, actor=actor, started_at=started_at)
    # None: the run changed under a fresh read, so another delivery has the step
    return result or StepResult("skipped")


def execute_segment(
    *, run_pk: int, state_id: str, actor: Actor, seen: dict | None = None, queue: str | None = None
) -> StepResult:
    """Run the step, then the run's following steps on the same queue in this same call, each its
    own committed checkpoint, until a pause, a step on another queue, or the segment's limits.

    A message that finds its run further on (redelivered after its worker died mid-segment)
    resumes at the run's current step if that step is on this queue: the steps before it were
    committed and are never run again; the current one runs under the usual checks, so at most
    once in effect even if another delivery has it too.
    """
    seconds, steps = segment_limits()
    segment = _Segment(
        run_pk=run_pk, queue=queue or "", deadline=time.monotonic() + seconds, steps_left=steps - 1
    )
    token = _SEGMENT.set(segment)
    done = 0
    try:
        result = execute_step(run_pk=run_pk, state_id=state_id, actor=actor, seen=seen)
        if result.status == "skipped" and (resumed := _resume_at(run_pk, queue, state_id)) is not None:
            log.info("journey.segment_resumed", run=run_pk, message_state=state_id, state=resumed)
            state_id = resumed
            result = execute_step(run_pk=run_pk, state_id=state_id, actor=actor)
        done = 1
        while result.status == "done" and segment.next is not None:
            (state_id, seen), segment.next = segment.next, None
            result = execute_step(run_pk=run_pk, state_id=state_id, actor=actor, seen=seen)
            done += 1
    finally:
        segment.closed = True
        _SEGMENT.reset(token)
        if segment.next is not None:  # a step committed but the segment stopped: hand it on
            next_state, next_seen = segment.next
            _send_step(run_pk, _journey_of_run(run_pk).state(next_state), next_seen)
    return StepResult(result.status, retry_in=result.retry_in, state_id=state_id, steps=done)


def _journey_of_run(run_pk: int) -> Journey:
    run = JourneyRun.objects.only("journey_name").get(pk=run_pk)
    return _journey(run)


def _resume_at(run_pk: int, queue: str | None, message_state: str) -> str | None:
    """The step a message for `message_state` resumes at: the run's current step, if the run moved
    on to another Task step on the same queue (the message's segment committed up to there)."""
    run = runrow.read(run_pk)
    if run is None or run.phase != Phase.RUNNING or run.waiting_for != WaitKind.TASK:
        return None
    if run.current_state == message_state:
        return None
    journey = get_journey(run.journey_name)
    if journey is None or run.current_state not in journey._by_id:
        return None
    state = journey.state(run.current_state)
    message_task = journey._by_id.get(message_state)
    queue = queue or (queue_of(message_task) if isinstance(message_task, Task) else None)
    if not isinstance(state, Task) or queue_of(state) != queue:
        return None
    return state.id


def _execute(
    run: JourneyRun | None, state_id: str, *, actor: Actor, started_at: datetime
) -> StepResult | None:
    """One attempt at the step on `run` as read; None if the run changed since that read."""
    if run is None or run.phase != Phase.RUNNING or run.current_state != state_id:
        return StepResult("skipped")
    journey = _journey(run)  # an unknown journey or state is the caller's error: it raises
    task = journey.state(state_id)
    if isinstance(task, Map):
        try:
            return _split(run, journey, task, actor=actor, started_at=started_at)
        except Exception as exc:  # noqa: BLE001 - splitting fails like any step
            return _step_failed(run.pk, state_id, exc, started_at=started_at, actor=actor, count_attempt=True)
    if not isinstance(task, Task):
        return StepResult("skipped")
    segment = _SEGMENT.get()
    if segment is not None and not segment.queue and segment.run_pk == run.pk:
        segment.queue = queue_of(task)  # the queue this segment's first step came from
    step = _run_transactional if task.transactional else _run_leased
    # nested in a caller's transaction (tests, a shell): attribute it and restore the caller's
    scope = audited(actor=actor, reason=f"step {state_id}") if connection.in_atomic_block else nullcontext()
    try:
        with scope:
            return (
                StepResult("done") if step(run, journey, task, actor=actor, started_at=started_at) else None
            )
    except _StepMovedOn:
        return None
    except Exception as exc:  # noqa: BLE001 - any step failure is recorded on the run
        # a transactional step's attempt count rolled back with its work; a lease claim committed it
        return _step_failed(
            run.pk, state_id, exc, started_at=started_at, actor=actor, count_attempt=task.transactional
        )


# --- Map (fan-out) --------------------------------------------------------------------------------
# Backoff before a failed chunk's next attempt (seconds); recovery re-enqueues it should the
# countdown's message be lost.
CHUNK_RETRY_DELAYS = (2, 10, 30)


def _send_chunk(chunk_pk: int, state: Map, countdown: int | None = None) -> None:
    from journeys.tasks import run_chunk

    options = {"queue": state.queue} if state.queue else {}
    run_chunk.apply_async(args=[chunk_pk], countdown=countdown, **options)


def _split(run: JourneyRun, journey: Journey, state: Map, *, actor: Actor, started_at: datetime) -> StepResult:
    """A Map state's first step: its input as chunk rows, the first `concurrency` of them enqueued
    after commit, the run waiting on them. Under the run's lock, once: a duplicate finds it done."""
    with audited(actor=actor, reason=f"step {state.id}"):
        locked = JourneyRun.objects.select_for_update().filter(pk=run.pk).first()
        if (
            locked is None
            or locked.phase != Phase.RUNNING
            or locked.current_state != state.id
            or locked.waiting_for != WaitKind.TASK
        ):
            return StepResult("skipped")
        ctx = _step_context(locked, actor)
        items = list(state.items(ctx))
        size = state.chunk_size(ctx) if callable(state.chunk_size) else state.chunk_size
        size = max(1, int(size))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        locked.context = ctx.context
        locked.context.setdefault("maps", {})[state.id] = {"items": len(items), "chunks": len(chunks)}
        if not chunks:
            _advance(locked, journey, state, None, started_at=started_at)
            return StepResult("done")
        now = timezone.now()
        created = JourneyChunk.objects.bulk_create(
            JourneyChunk(
                run=locked,
                state=state.id,
                index=index,
                items=chunk,
                dispatched_at=now if index < state.concurrency else None,
            )
            for index, chunk in enumerate(chunks)
        )
        locked.waiting_for = WaitKind.MAP
        locked.dispatched_at = now
        locked.save()
        first = [chunk.pk for chunk in created[: state.concurrency]]
        transaction.on_commit(lambda: [_send_chunk(pk, state) for pk in first])
    log.info("journey.map_split", run=locked.journey_id, state=state.id, items=len(items), chunks=len(chunks))
    return StepResult("done")


_CLAIM_CHUNK_SQL = """
UPDATE journeys_journeychunk AS c
SET status = 'running', attempt = c.attempt + 1, lease_until = now() + %s, due_at = NULL
FROM journeys_journeyrun AS r
WHERE c.id = %s AND c.status = 'pending' AND (c.due_at IS NULL OR c.due_at <= now())
  AND r.id = c.run_id AND r.phase = 'RUNNING' AND r.current_state = c.state AND r.waiting_for = 'map'
RETURNING c.run_id, c.state, c.index, c.attempt
"""


def execute_chunk(*, chunk_pk: int, actor: Actor) -> StepResult:
    """Run one chunk of a Map state, at most once at a time (a lease): claim it, run its function,
    record its outcome, enqueue the next chunk waiting for a slot, and move the run on when every
    chunk has an outcome. A duplicate or early message, or a cancelled run, does nothing."""
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_CHUNK_SQL, [leases.step_lease(), chunk_pk])
        row = cursor.fetchone()
    if row is None:
        return StepResult("skipped")
    run_pk, state_id, index, attempt = row
    run = runrow.read(run_pk)
    journey = _journey(run)
    state = journey.state(state_id)
    items = JourneyChunk.objects.values_list("items", flat=True).get(pk=chunk_pk)
    try:
        result = state.fn(_step_context(run, actor), items)
    except Exception as exc:  # noqa: BLE001 - a chunk's failure is recorded on the chunk
        log.warning("journey.chunk_failed", run=run.journey_id, state=state_id, chunk=index, error=repr(exc))
        return _chunk_outcome(run_pk, journey, state, chunk_pk, attempt, actor=actor, error=exc)
    return _chunk_outcome(run_pk, journey, state, chunk_pk, attempt, actor=actor, result=result)


def _chunk_outcome(
    run_pk: int,
    journey: Journey,
    state: Map,
    chunk_pk: int,
    attempt: int,
    *,
    actor: Actor,
    result: Any = None,
    error: Exception | None = None,
) -> StepResult:
    """Record a chunk's attempt under the run's lock (which orders the chunks' fan-in)."""
    now = timezone.now()
    with audited(actor=actor, reason=f"step {state.id}: chunk"):
        locked = JourneyRun.objects.select_for_update().get(pk=run_pk)
        chunk = JourneyChunk.objects.filter(pk=chunk_pk, status=JourneyChunk.Status.RUNNING, attempt=attempt)
        if error is None:
            updated = chunk.update(
                status=JourneyChunk.Status.SUCCEEDED, result=result, lease_until=None, error="", finished_at=now
            )
            status = "done"
        elif attempt < state.max_attempts:
            delay = CHUNK_RETRY_DELAYS[min(attempt, len(CHUNK_RETRY_DELAYS)) - 1]
            updated = chunk.update(
                status=JourneyChunk.Status.PENDING,
                lease_until=None,
                due_at=now + timedelta(seconds=delay),
                dispatched_at=now,
                error=traceback.format_exc()[-4000:],
            )
            if updated:
                transaction.on_commit(lambda: _send_chunk(chunk_pk, state, countdown=delay))
            return StepResult("retry" if updated else "skipped", retry_in=delay)
        else:
            updated = chunk.update(
                status=JourneyChunk.Status.FAILED,
                lease_until=None,
                error=traceback.format_exc()[-4000:],
                finished_at=now,
            )
            status = "failed"
        if not updated:
            return StepResult("skipped")  # recovery handed the chunk on meanwhile
        _next_chunk_or_move_on(locked, journey, state, now)
    return StepResult(status)


def _next_chunk_or_move_on(locked: JourneyRun, journey: Journey, state: Map, now: datetime) -> None:
    """After a chunk's outcome (the run locked): give its slot to the next chunk waiting, and move
    the run on if none of the state's chunks is left without an outcome (a conditional update)."""
    if locked.phase != Phase.RUNNING or locked.current_state != state.id or locked.waiting_for != WaitKind.MAP:
        return
    chunks = JourneyChunk.objects.filter(run=locked, state=state.id)
    waiting = chunks.filter(status=JourneyChunk.Status.PENDING, dispatched_at__isnull=True).order_by("index").first()
    if waiting is not None:
        chunks.filter(pk=waiting.pk).update(dispatched_at=now)
        transaction.on_commit(lambda: _send_chunk(waiting.pk, state))
        return
    open_chunks = chunks.filter(status__in=(JourneyChunk.Status.PENDING, JourneyChunk.Status.RUNNING))
    moved = (
        JourneyRun.objects.filter(pk=locked.pk, current_state=state.id, waiting_for=WaitKind.MAP)
        .exclude(Exists(open_chunks))
        .update(waiting_for=WaitKind.TASK)
    )
    if not moved:
        return
    counts = dict(chunks.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    results = list(chunks.order_by("index").values_list("result", flat=True))
    failed = counts.get(JourneyChunk.Status.FAILED, 0)
    locked.context.setdefault("maps", {})[state.id] = {
        **locked.context.get("maps", {}).get(state.id, {}),
        "succeeded": counts.get(JourneyChunk.Status.SUCCEEDED, 0),
        "failed": failed,
        "results": results,
    }
    started_at = chunks.order_by("created_at").values_list("created_at", flat=True).first() or now
    _advance(locked, journey, state, "failed" if failed else None, started_at=started_at)


def chunks_recover(*, now: datetime | None = None) -> int:
    """Hand on chunks whose worker died (lapsed lease) or whose message was lost (dispatched long
    ago, still pending); each claim is conditional, so a chunk is never run twice at once."""
    now = now or timezone.now()
    stalled_before = now - stall_after()
    live = Q(run__phase=Phase.RUNNING, run__waiting_for=WaitKind.MAP)
    lapsed = Q(status=JourneyChunk.Status.RUNNING, lease_until__lt=now)
    lost = Q(status=JourneyChunk.Status.PENDING, dispatched_at__lt=stalled_before) & (
        Q(due_at__isnull=True) | Q(due_at__lt=stalled_before)
    )
    count = 0
    for chunk in JourneyChunk.objects.filter(live & (lapsed | lost)).select_related("run").only(
        "pk", "state", "status", "run__journey_name"
    )[:1000]:
        journey = get_journey(chunk.run.journey_name)
        if journey is None:
            continue
        with transaction.atomic():
            touched = (
                JourneyChunk.objects.filter(pk=chunk.pk, status=chunk.status)
                .filter(lapsed | lost)
                .update(status=JourneyChunk.Status.PENDING, lease_until=None, due_at=None, dispatched_at=now)
            )
            if touched:
                state = journey.state(chunk.state)
                transaction.on_commit(lambda pk=chunk.pk, state=state: _send_chunk(pk, state))
                count += 1
    if count:
        log.warning("journey.recovered_chunks", count=count)
    return count


def step_failure(state_id: str, exc: BaseException, *, attempts: int) -> dict[str, str]:
    """The error of a run whose step failed for good: {code, reason, state, cause}.

    The reason is for a person: what went wrong in words and what to do. A business refusal
    (ApplicationError) gives its own detail; a database error names the rule it broke, never the
    raw SQL message (that and the traceback stay in the step's detail on the run's timeline).
    """
    if isinstance(exc, ApplicationError):
        cause, what = exc.code, exc.detail.rstrip(".")
    elif isinstance(exc, IntegrityError):
        constraint = violated_constraint(exc)
        cause = "database-constraint"
        what = "its work conflicts with data already stored" + (
            f" (database rule {constraint})" if constraint else ""
        )
    elif isinstance(exc, OperationalError):
        cause, what = "database-unavailable", "the database could not be reached or stopped the work"
    elif isinstance(exc, DatabaseError):
        cause, what = "database-error", "the database refused its work"
    else:
        cause, what = "unexpected-error", f"an unexpected {type(exc).__name__} stopped it"
    reason = (
        f"Step {state_id} failed {attempts} time{'s' if attempts != 1 else ''}: {what}. "
        "Fix the cause, then start the run again; the technical detail is in the step's entry on the run's timeline."
    )
    return {"code": "STEP_FAILED", "reason": reason[:1000], "state": state_id, "cause": cause}


def _step_failed(
    run_pk: int, state_id: str, exc: Exception, *, started_at: datetime, actor: Actor, count_attempt: bool
) -> StepResult:
    log.warning("journey.step_failed", run=run_pk, state=state_id, error=repr(exc))
    with audited(actor=actor, reason=f"step {state_id} failed"):
        run = JourneyRun.objects.select_for_update().get(pk=run_pk)
        if run.phase != Phase.RUNNING or run.current_state != state_id:
            return StepResult("skipped")
        if count_attempt:
            run.attempt += 1
        attempt = max(run.attempt, 1)
        _record(
            run,
            state_id,
            started_at=started_at,
            outcome="error",
            attempt=attempt,
            detail=traceback.format_exc()[-4000:],
        )
        if attempt >= MAX_ATTEMPTS:
            run.phase = Phase.FAILED
            run.waiting_for = WaitKind.NONE
            run.error = step_failure(state_id, exc, attempts=attempt)
            run.lease_until = None
            run.save()
            journey = get_journey(run.journey_name)
            if journey is not None and journey.on_finish is not None:
                journey.on_finish(run)
            return StepResult("failed")
        run.lease_until = None
        run.dispatched_at = timezone.now()
        run.save()
    return StepResult("retry", retry_in=RETRY_DELAYS[min(attempt, len(RETRY_DELAYS)) - 1])


# --- Approvals -----------------------------------------------------------------------------------
def _default_decider_check(user, tenant_id: int, permission: str) -> bool:
    """Without a configured check nobody may decide: the kernel fails closed rather than guess who
    holds which role."""
    return False


# Who may decide: fn(user, tenant_id, permission) -> bool. The kernel knows no roles; the project
# names its check in settings.JOURNEYS_DECIDER_CHECK (a dotted path, read on first use), or a
# caller sets one with set_decider_check.
_decider_check = None


def set_decider_check(check) -> None:
    """Make `check(user, tenant_id, permission) -> bool` the kernel's answer to "may this user
    decide this approval step?" for every journey (None: back to settings.JOURNEYS_DECIDER_CHECK).
    The kernel still refuses the run's starter (maker-checker) whatever the check says."""
    global _decider_check
    _decider_check = check


def _configured_decider_check():
    global _decider_check
    if _decider_check is None:
        path = getattr(settings, "JOURNEYS_DECIDER_CHECK", None)
        _decider_check = import_string(path) if path else _default_decider_check
    return _decider_check


def may_decide(user, *, tenant_id: int, permission: str) -> bool:
    return user is not None and user.is_active and bool(_configured_decider_check()(user, tenant_id, permission))


def run_decide(
    *, run: JourneyRun, step_id: str, decision: str, comment: str, user, actor: Actor
) -> JourneyRun:
    """Record the one decision of an approval step and continue the run.

    The decider holds journeys.decide in the run's tenant and did not start the run.
    A second or concurrent decision answers 409.
    """
    if decision not in JourneyApproval.Decision.values:
        raise ApplicationError(f"Unknown decision {decision!r}.", field="decision")
    journey = _journey(run)
    state = journey.approval_for_step(step_id)
    if state is None:
        raise NotFound(f"Journey {run.journey_name} has no step {step_id!r}.")
    if not may_decide(user, tenant_id=run.tenant_id, permission=state.policy.permission):
        raise PermissionDenied(
            "Approving needs the finance-approver role in this tenant.",
            extra={"permission": state.policy.permission},
        )
    with audited(actor=actor, reason=f"{step_id}: {decision}"):
        locked = JourneyRun.objects.select_for_update().get(pk=run.pk)
        if locked.phase != Phase.RUNNING or locked.current_state != state.id:
            raise StepNotActive(
                f"Step {step_id} is not waiting for a decision.",
                extra={"phase": locked.phase, "currentState": locked.current_state},
            )
        maker_checker = state.policy.maker_checker
        if maker_checker and locked.started_by_id is not None and locked.started_by_id == user.pk:
            raise PermissionDenied("The person who started this run cannot approve it.")
        try:
            with transaction.atomic():
                JourneyApproval.objects.create(
                    run=locked,
                    step_id=step_id,
                    decision=decision,
                    comment=comment,
                    decided_by=user,
                    # the database refuses a decision by the preparer it names (maker-checker)
                    preparer_id=locked.started_by_id if maker_checker else None,
                )
        except IntegrityError as exc:
            raise StepNotActive(f"Step {step_id} was already decided.") from exc
        locked.context["approval"] = {
            "stepId": step_id,
            "decision": decision,
            "comment": comment,
            "decidedBy": user.get_username(),
            "decidedAt": timezone.now().isoformat(),
        }
        _advance(locked, journey, state, decision, started_at=locked.updated_at)
    log.info("journey.decided", run=locked.journey_id, step=step_id, decision=decision, user=user.pk)
    return locked


# --- Cancelling ----------------------------------------------------------------------------------
def run_cancel(*, run: JourneyRun, actor: Actor, reason: str = "") -> JourneyRun:
    """Stop a running journey: FAILED with JOURNEY_CANCELLED, its pending timers dropped. Idempotent."""
    with audited(actor=actor, reason=reason or "journey cancelled"):
        locked = JourneyRun.objects.select_for_update().get(pk=run.pk)
        if locked.phase != Phase.RUNNING:
            return locked
        now = timezone.now()
        JourneyTimer.objects.filter(run=locked, fired_at__isnull=True, cancelled_at__isnull=True).update(
            cancelled_at=now
        )
        _record(
            locked,
            locked.current_state,
            started_at=now,
            outcome="cancelled",
            attempt=max(locked.attempt, 1),
            detail=reason,
        )
        locked.phase = Phase.FAILED
        locked.waiting_for = WaitKind.NONE
        locked.lease_until = None
        locked.error = {"code": "JOURNEY_CANCELLED", "reason": reason or "Cancelled."}
        locked.save()
        journey = get_journey(locked.journey_name)
        if journey is not None and journey.on_finish is not None:
            journey.on_finish(locked)
    return locked


# --- Timers and recovery (beat) ------------------------------------------------------------------
# Timers fired per beat tick and transaction: bounded so one tick never holds locks for long.
TIMER_BATCH = 200


def timers_fire_due(*, actor: Actor, now: datetime | None = None) -> int:
    """Resume the runs whose timers are due. Safe with several beats: skip-locked claims."""
    now = now or timezone.now()
    fired = 0
    with audited(actor=actor, reason="timer due"):
        due = list(
            JourneyTimer.objects.select_for_update(skip_locked=True)
            .filter(fired_at__isnull=True, cancelled_at__isnull=True, due_at__lte=now)
            .order_by("due_at")[:TIMER_BATCH]
        )
        for timer in due:
            timer.fired_at = now
            timer.save(update_fields=["fired_at"])
            run = JourneyRun.objects.select_for_update().get(pk=timer.run_id)
            if run.phase != Phase.RUNNING or run.current_state != timer.state:
                continue
            journey = _journey(run)
            _advance(run, journey, journey.state(timer.state), None, started_at=timer.created_at)
            fired += 1
    return fired


def runs_recover_stalled(*, now: datetime | None = None) -> int:
    """Re-enqueue steps whose message was lost or whose worker died. Idempotency makes it safe."""
    now = now or timezone.now()
    stalled_before = now - stall_after()
    stalled = JourneyRun.objects.filter(
        phase=Phase.RUNNING, waiting_for=WaitKind.TASK, dispatched_at__lt=stalled_before
    ).exclude(lease_until__gte=now)
    count = 0
    for run in stalled.only("pk", "journey_name", "current_state")[:1000]:
        journey = get_journey(run.journey_name)
        if journey is None:
            continue
        state = journey.state(run.current_state)
        with transaction.atomic():
            touched = JourneyRun.objects.filter(
                pk=run.pk,
                phase=Phase.RUNNING,
                current_state=run.current_state,
                dispatched_at__lt=stalled_before,
            ).update(dispatched_at=now)
            if touched:
                _enqueue_step(run, state, with_snapshot=False)
                count += 1
    if count:
        log.warning("journey.recovered_stalled", count=count)
    return count + chunks_recover(now=now)
