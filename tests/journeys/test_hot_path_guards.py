"""Guards of the kernel's hot path: the snapshot's field list pinned against the model, and the fast
path (segments, snapshots in messages, one-statement records) property-tested against a reference
path (an in-memory interpreter of the same declaration) for the same outcomes."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.actors import Actor
from journeys import engine, runrow
from journeys.definition import Journey, StepContext, Succeed, Task, register
from journeys.models import JourneyRun, JourneyStep

ACTOR = Actor.system("tests")

# Every column of the run, by what the hot path does with it. A new column fails this test until
# it is put in one of these lists (and in runrow's, if a step may change it or a step reads it).
STEP_CHANGES = [
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
]
STEP_READS = ["journey_id", "journey_name", "tenant_id", "subject_id", "started_by_id", "parent_id"]
SET_AT_START_NEVER_READ_BY_A_STEP = ["id", "schedule_id", "occurrence", "dedupe_key", "created_at"]


def test_the_snapshot_field_lists_are_pinned_against_the_model():
    columns = [f.attname for f in JourneyRun._meta.concrete_fields]
    classified = STEP_CHANGES + STEP_READS + SET_AT_START_NEVER_READ_BY_A_STEP
    assert sorted(columns) == sorted(classified), "classify the new JourneyRun column here and in runrow"
    assert len(classified) == len(set(classified))
    assert [f.attname for f in runrow.STEP_FIELDS] == STEP_CHANGES
    assert list(runrow._SNAPSHOT_ATTNAMES) == STEP_READS + STEP_CHANGES


@pytest.mark.django_db
def test_a_snapshot_carries_every_step_field_and_identity_unchanged(tenant_a):
    run, _ = engine.run_start(
        journey_name="kernel-guard-sample", tenant=tenant_a.tenant, actor=ACTOR, context={"x": 1, "nested": {"a": [1, 2]}}
    )
    run.lease_until = datetime(2026, 12, 1, 6, 0, 0, 123456, tzinfo=UTC)
    run.output, run.error = {"status": "X"}, {"code": "Y"}

    back = runrow.from_snapshot(run.pk, copy.deepcopy(runrow.snapshot(run)))

    for name in STEP_READS + STEP_CHANGES:
        assert getattr(back, name) == getattr(run, name), name


register(
    Journey(
        name="kernel-guard-sample",
        start="only",
        states=[Task("only", lambda ctx: None, next="done"), Succeed("done")],
    )
)


# --- Fast path against the reference path ---------------------------------------------------------
def _step_fn(state_id: str, kind: str, multiplier: int):
    def fn(ctx: StepContext):
        if kind == "query":
            from tenancy.models import Tenant

            assert Tenant.objects.filter(pk=ctx.tenant_id).exists()
        x = ctx.context["x"]
        ctx.context["x"] = (x * multiplier + 7) % 101
        ctx.context.setdefault("trail", []).append(state_id)
        return "odd" if ctx.context["x"] % 2 else None

    return fn


_names = itertools.count()

step_spec = st.tuples(
    st.sampled_from(["none", "query", "leased"]),  # what the work sends
    st.sampled_from([None, "io"]),  # its queue
    st.integers(min_value=2, max_value=9),  # how it changes the context
    st.booleans(),  # whether an odd outcome skips the next step
)


def _journey(specs) -> Journey:
    count = len(specs)
    states = []
    for index, (kind, queue, multiplier, skips) in enumerate(specs):
        here = f"s{index}"
        after = f"s{index + 1}" if index + 1 < count else "done"
        skip_to = f"s{index + 2}" if index + 2 < count else "done"
        states.append(
            Task(
                here,
                _step_fn(here, kind, multiplier),
                next=after,
                routes={"odd": skip_to if skips else after},
                transactional=kind != "leased",
                queue=queue,
            )
        )
    return register(
        Journey(
            name=f"kernel-guard-{next(_names)}",
            start="s0",
            states=[*states, Succeed("done", output=lambda c: {"x": c["x"]})],
        )
    )


def _reference(journey: Journey, context: dict) -> tuple[str, dict, list[tuple[str, str]]]:
    """The obvious semantics: run each Task's function on the context and follow its route."""
    context, visited = copy.deepcopy(context), []
    state = journey.state(journey.start)
    while isinstance(state, Task):
        ctx = StepContext(
            run_pk=0, journey_id="", tenant_id=0, subject_id="", context=context, started_by_id=None, actor=ACTOR
        )
        outcome = state.fn(_with_tenant(ctx))
        visited.append((state.id, outcome or "ok"))
        state = journey.state(state.route(outcome))
    return state.id, context, visited


_TENANT_PK: list[int] = []


def _with_tenant(ctx: StepContext) -> StepContext:
    ctx.tenant_id = _TENANT_PK[0]
    return ctx


@pytest.mark.django_db(transaction=True)
def test_the_fast_path_reaches_the_same_outcome_as_the_reference_path(tenant_a):
    _TENANT_PK[:] = [tenant_a.tenant.pk]

    @settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
    )
    @given(
        specs=st.lists(step_spec, min_size=1, max_size=7),
        x=st.integers(min_value=0, max_value=100),
        segment_steps=st.integers(min_value=1, max_value=4),
    )
    def check(specs, x, segment_steps):
        from django.conf import settings as django_settings

        journey = _journey(specs)
        expected_state, expected_context, expected_visits = _reference(journey, {"x": x})

        before = django_settings.JOURNEY_SEGMENT_STEPS
        django_settings.JOURNEY_SEGMENT_STEPS = segment_steps
        try:
            run, _ = engine.run_start(journey_name=journey.name, tenant=tenant_a.tenant, actor=ACTOR, context={"x": x})
            # each call stands for the worker taking the message a segment handed back
            for _ in range(len(specs) + 1):
                current = JourneyRun.objects.get(pk=run.pk)
                if current.waiting_for != "task":
                    break
                engine.execute_segment(run_pk=run.pk, state_id=current.current_state, actor=ACTOR)
        finally:
            django_settings.JOURNEY_SEGMENT_STEPS = before

        run.refresh_from_db()
        assert (run.phase, run.current_state) == ("SUCCEEDED", expected_state)
        assert run.context == expected_context
        assert run.output == {"x": expected_context["x"]}
        history = list(JourneyStep.objects.filter(run=run).order_by("id").values_list("state", "outcome"))
        assert history == expected_visits

    check()
