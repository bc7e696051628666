"""The journey kernel's one public module: everything a domain app uses of it.

Apps declare their journeys with the vocabulary below in their `workflows.py`, start runs with
`run_start`, bind schedules with `schedule_configure`, and read runs through the selectors named
here. The kernel imports no domain app (an import-linter contract in pyproject.toml, checked in the
suite), and apps import nothing of the kernel but this module (another contract).

Hooks the kernel calls and an app (or the project's wiring) sets:
- `set_decider_check(fn)`: who may decide an approval step (see engine.set_decider_check);
- `register_approval_panel(journey, fn)`: a richer admin approval page for one journey;
- `Journey(configure=Configure(...))`: `manage.py journey start <journey> …` for one journey.
"""

from journeys.definition import (
    Approval,
    Configure,
    Fail,
    Journey,
    Map,
    Policy,
    StepContext,
    Succeed,
    Task,
    Timer,
    after,
    register,
    register_approval_panel,
)
from journeys.engine import run_cancel, run_start, set_decider_check
from journeys.leases import step_lease
from journeys.models import ApprovalPolicy, JourneyRun, Phase
from journeys.occurrences import InvalidInterval, add_fits, check_schedule_fits, parse_interval
from journeys.policies import approval_required
from journeys.scheduling import schedule_configure
from journeys.selectors import run_outcome, run_status

__all__ = [
    "Approval",
    "ApprovalPolicy",
    "Configure",
    "Fail",
    "InvalidInterval",
    "Journey",
    "JourneyRun",
    "Map",
    "Phase",
    "Policy",
    "StepContext",
    "Succeed",
    "Task",
    "Timer",
    "after",
    "add_fits",
    "approval_required",
    "check_schedule_fits",
    "parse_interval",
    "register",
    "register_approval_panel",
    "run_cancel",
    "run_outcome",
    "run_start",
    "run_status",
    "schedule_configure",
    "set_decider_check",
    "step_lease",
]
