"""How a journey is declared: its states in order, which are tasks, approvals, timers or ends,
and where each outcome routes. A journey's whole workflow reads top to bottom in its app's
`workflows.py`; this module only gives the vocabulary.

    Journey(
        name="monthly-invoicing-batch",
        start="draftInvoices",
        states=[
            Task("draftInvoices", draft_invoices, next="validateDrafts"),
            Task("validateDrafts", validate, routes={"ok": "waitForApproval", "failed": "done"}),
            Approval("waitForApproval", step_id="approveInvoiceBatch",
                     routes={"APPROVED": "send", "REJECTED": "done"}),
            Timer("waitBeforeReminder", duration=lambda ctx: "P7D", next="remind"),
            Succeed("done", output=lambda ctx: {...}),
        ],
    )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

StepFunction = Callable[["StepContext"], str | None]


@dataclass
class StepContext:
    """What a step sees: the run's identity and its mutable JSON context."""

    run_pk: int
    journey_id: str
    tenant_id: int
    subject_id: str
    context: dict[str, Any]
    started_by_id: int | None
    actor: Any  # core.actors.Actor of the executing task
    parent_pk: int | None = None  # the configuration run of a scheduled run


@dataclass(frozen=True)
class State:
    id: str

    def route(self, outcome: str | None) -> str | None:
        return None


@dataclass(frozen=True)
class Task(State):
    """Runs `fn`; its returned outcome picks the route (None → `next`).

    transactional=True: the work commits in the same transaction that records the step, so a
    duplicate delivery finds the run moved on. transactional=False (long or outside work): the
    step takes a lease, its work commits in its own idempotent transactions, then it records.
    """

    fn: StepFunction = None  # type: ignore[assignment]
    next: str | None = None
    routes: Mapping[str, str] = field(default_factory=dict)
    transactional: bool = True
    queue: str | None = None

    def route(self, outcome: str | None) -> str | None:
        if outcome is not None and outcome in self.routes:
            return self.routes[outcome]
        if self.next is None:
            raise KeyError(f"step {self.id!r} has no route for outcome {outcome!r}")
        return self.next


# The permission a decider needs unless a journey's policy names another (see engine.set_decider_check).
DECIDE_PERMISSION = "journeys.decide"


@dataclass(frozen=True)
class Policy:
    """Who may decide an approval step and when the kernel decides it itself, for every journey.

    permission: what the decider needs in the run's tenant (asked of the decider check).
    maker_checker: the person who started the run never decides it (also a database constraint).
    amounts: the run's amounts per currency (from its context) that the tenant's ApprovalPolicy
        threshold compares; the kernel approves the step itself when that policy says no approval
        is needed (mode never, or above_threshold with every amount within it). None: always waits.
    """

    permission: str = DECIDE_PERMISSION
    maker_checker: bool = True
    amounts: Callable[[dict], Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class Approval(State):
    """Pauses until a person decides; `step_id` is the API's step name; routes by decision.

    The kernel enforces its `policy` (who decides, maker-checker, the tenant's auto-approval)."""

    step_id: str = ""
    routes: Mapping[str, str] = field(default_factory=dict)
    # what the approver sees: a summary built from the run's context
    summary: Callable[[dict], dict] | None = None
    policy: Policy = field(default_factory=Policy)

    def route(self, outcome: str | None) -> str | None:
        return self.routes[outcome]


@dataclass(frozen=True)
class Timer(State):
    """Pauses until a durable timer fires: `due_at(context, now)` says when."""

    due_at: Callable[[dict, datetime], datetime] = None  # type: ignore[assignment]
    next: str = ""

    def route(self, outcome: str | None) -> str | None:
        return self.next


@dataclass(frozen=True)
class Map(State):
    """Fan-out: `items(ctx)` (a list of JSON values, ids say) is split into chunks of `chunk_size`
    (an int or `fn(ctx)`), rows the kernel owns; each chunk runs `fn(ctx, items)` as a task on
    `queue`, at most `concurrency` at a time. A chunk whose function raises is retried with backoff
    up to `max_attempts`, then failed. When every chunk has an outcome the run moves on: to
    `routes["failed"]` if one failed and that route exists, else to `next`. The chunks' results are
    in `context["maps"][state]`. A chunk's function sees the context read-only (chunks run in
    parallel), does its work in its own idempotent transactions (it may run again after a crash)
    and should finish within the step lease (JOURNEY_STEP_LEASE_SECONDS)."""

    items: Callable[[StepContext], list] = None  # type: ignore[assignment]
    fn: Callable[[StepContext, list], Any] = None  # type: ignore[assignment]
    chunk_size: int | Callable[[StepContext], int] = 10
    concurrency: int = 8
    queue: str | None = None
    max_attempts: int = 3
    next: str = ""
    routes: Mapping[str, str] = field(default_factory=dict)

    def route(self, outcome: str | None) -> str | None:
        return self.routes.get(outcome or "ok", self.next)


@dataclass(frozen=True)
class Succeed(State):
    output: Callable[[dict], dict] = lambda context: {}


@dataclass(frozen=True)
class Fail(State):
    code: str = "FAILED"
    reason: Callable[[dict], str] = lambda context: ""


TERMINAL = (Succeed, Fail)


@dataclass(frozen=True)
class Configure:
    """How `manage.py journey start <journey> …` configures a journey, so the command knows none.

    `add_arguments(parser)` adds the journey's own options to its `start` sub-command (the kernel
    adds --tenant, --user, --follow and --timeout). `start(tenant=, options=, user=, actor=)`
    validates them (raising django's CommandError naming the option) and configures: it returns
    the JourneySchedule it bound or the JourneyRun it started, and a line to print.
    """

    add_arguments: Callable[[Any], None]
    start: Callable[..., tuple[Any, str]]
    help: str = ""


# (label, done, total) of what a run works through besides its steps ("invoices sent" …): bars
# `manage.py journey … --follow` draws.
Progress = Callable[[Any], list[tuple[str, int, int]]]


@dataclass
class Journey:
    name: str
    start: str
    states: list[State]
    # the output of a configuration run (schedulable journeys)
    config_output: Callable[[dict], dict] | None = None
    # called when a run ends, e.g. to copy its outcome onto the configuration run
    on_finish: Callable[[Any], None] | None = None
    # `manage.py journey start <name>` (see Configure); None: not started from the command line
    configure: Configure | None = None
    progress: Progress | None = None
    _by_id: dict[str, State] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {s.id: s for s in self.states}
        if len(self._by_id) != len(self.states):
            raise ValueError(f"journey {self.name}: duplicate state ids")
        for state in self.states:
            targets = []
            if isinstance(state, Task):
                targets = [state.next, *state.routes.values()]
            elif isinstance(state, Approval):
                targets = list(state.routes.values())
            elif isinstance(state, Timer):
                targets = [state.next]
            elif isinstance(state, Map):
                targets = [state.next, *state.routes.values()]
            for target in targets:
                if target is not None and target not in self._by_id:
                    raise ValueError(f"journey {self.name}: {state.id} routes to unknown state {target!r}")
        if self.start not in self._by_id:
            raise ValueError(f"journey {self.name}: unknown start state {self.start!r}")

    def state(self, state_id: str) -> State:
        return self._by_id[state_id]

    def approval_for_step(self, step_id: str) -> Approval | None:
        return next((s for s in self.states if isinstance(s, Approval) and s.step_id == step_id), None)


_REGISTRY: dict[str, Journey] = {}
# Journey name → function(request, run) returning (template, context) of a richer approval panel
# than the generic key/value summary in the admin. Apps register theirs (register_approval_panel).
APPROVAL_PANELS: dict[str, Callable[[Any, Any], tuple[str, dict[str, Any]]]] = {}


def register_approval_panel(
    journey_name: str, panel: Callable[[Any, Any], tuple[str, dict[str, Any]]]
) -> None:
    APPROVAL_PANELS[journey_name] = panel


def register(journey: Journey) -> Journey:
    _REGISTRY[journey.name] = journey
    return journey


def get_journey(name: str) -> Journey | None:
    from django.apps import apps

    apps.check_apps_ready()
    _load_workflows()
    return _REGISTRY.get(name)


def all_journeys() -> dict[str, Journey]:
    _load_workflows()
    return dict(_REGISTRY)


def _load_workflows() -> None:
    """Import every installed app's workflows.py once, so their journeys register."""
    from django.utils.module_loading import autodiscover_modules

    if not getattr(_load_workflows, "done", False):
        autodiscover_modules("workflows")
        _load_workflows.done = True


def after(duration: timedelta) -> Callable[[dict, datetime], datetime]:
    return lambda context, now: now + duration
