"""Reads of journey runs shaped as the Journeys contract's JourneyStatus and JourneyOutcome."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from journeys.definition import TERMINAL, Approval, Task, Timer, get_journey
from journeys.models import JourneyRun, Phase

API_PREFIX = "/api/v1/journeys"


def runs_for_tenant(tenant) -> QuerySet[JourneyRun]:
    return JourneyRun.objects.filter(tenant=tenant).select_related("tenant")


def active_approval(run: JourneyRun) -> Approval | None:
    if run.phase != Phase.RUNNING:
        return None
    journey = get_journey(run.journey_name)
    state = journey.state(run.current_state) if journey else None
    return state if isinstance(state, Approval) else None


def _links(run: JourneyRun) -> dict[str, dict[str, str]]:
    base = f"{API_PREFIX}/{run.journey_id}"
    links = {"self": {"href": base, "method": "GET"}, "result": {"href": f"{base}/result", "method": "GET"}}
    approval = active_approval(run)
    if approval is not None:
        links[approval.step_id] = {"href": f"{base}/steps/{approval.step_id}", "method": "POST"}
    if run.phase == Phase.RUNNING:
        links["cancel"] = {"href": f"{base}/steps/cancel", "method": "POST"}
    return links


def _attributes(run: JourneyRun) -> dict[str, str]:
    attributes = {"tenantId": run.tenant.slug, "subjectId": run.subject_id}
    if run.parent_id:
        attributes["parentJourneyId"] = run.parent.journey_id
    if run.occurrence is not None:
        attributes["occurrence"] = str(run.occurrence)
    return attributes


def run_status(run: JourneyRun) -> dict[str, Any]:
    """JourneyStatus, plus what an approver needs to see while an approval step waits."""
    status = {
        "journeyId": run.journey_id,
        "journeyName": run.journey_name,
        "phase": run.phase,
        "currentState": run.current_state,
        "updatedAt": run.updated_at.isoformat(),
        "attributes": _attributes(run),
        "_links": _links(run),
    }
    approval = active_approval(run)
    if approval is not None and approval.summary is not None:
        status["approvalSummary"] = approval.summary(run.context)
    if run.context.get("lastRun"):
        status["lastRun"] = run.context["lastRun"]
    if run.error:
        status["error"] = run_error(run)
    return status


def run_error(run: JourneyRun) -> dict[str, str] | None:
    """{code, reason} of a failed run (the contract's error), None while it has none."""
    if not run.error:
        return None
    return {"code": run.error.get("code", ""), "reason": run.error.get("reason", "")}


def run_outcome(run: JourneyRun) -> dict[str, Any]:
    """JourneyOutcome of a terminal run."""
    output = run.output or {}
    outcome = {
        "journeyId": run.journey_id,
        "journeyName": run.journey_name,
        "phase": run.phase,
        "status": output.get("status") or (run.error or {}).get("code") or run.phase,
        "output": output,
        "attributes": _attributes(run),
        "_links": {"self": {"href": f"{API_PREFIX}/{run.journey_id}/result", "method": "GET"}},
    }
    if run.error:
        outcome["error"] = run_error(run)
    return outcome


def run_timeline(run: JourneyRun) -> dict[str, list]:
    """What happened to a run, oldest first: step attempts, timers and decisions."""
    return {
        "steps": list(run.steps.order_by("started_at", "id")),
        "timers": list(run.timers.order_by("created_at", "id")),
        "decisions": list(run.approvals.select_related("decided_by").order_by("decided_at", "id")),
    }


def happy_path(journey_name: str) -> list[str]:
    """The non-terminal states a run passes when every step goes its declared way and every
    approval is APPROVED: a task's `next` (else its first route), an approval's APPROVED route,
    a timer's `next`. Progress bars count against it."""
    journey = get_journey(journey_name)
    if journey is None:
        return []
    path, state_id = [], journey.start
    while state_id is not None and state_id not in path:
        state = journey.state(state_id)
        if isinstance(state, TERMINAL):
            break
        path.append(state_id)
        if isinstance(state, Task):
            state_id = state.next or next(iter(state.routes.values()), None)
        elif isinstance(state, Approval):
            state_id = state.routes.get("APPROVED")
        elif isinstance(state, Timer):
            state_id = state.next
        else:
            state_id = None
    return path
