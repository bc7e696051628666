"""The Journeys HTTP surface (see shared/contracts/journeyforge): status, result, steps, list."""

from __future__ import annotations

import base64
import binascii

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.actors import Actor
from core.api.serializers import StrictSerializer
from core.errors import Conflict, NotFound, ValidationFailed
from journeys import engine, selectors
from journeys.models import JourneyApproval, JourneyRun, Phase

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 200


class NotTerminal(Conflict):
    code = "journey-not-terminal"
    title = "Journey not terminal yet"


def get_run(request, journey_id: str) -> JourneyRun:
    """The caller's tenant's run, or 404 (another tenant's run does not exist for the caller)."""
    run = selectors.runs_for_tenant(request.tenant).filter(journey_id=journey_id).first()
    if run is None:
        raise NotFound("No such journey.")
    return run


class JourneyStatusView(APIView):
    required_permissions = "books.view"
    @extend_schema(operation_id="journeys_status", responses={200: dict})
    def get(self, request, journey_id: str):
        return Response(selectors.run_status(get_run(request, journey_id)))


class JourneyResultView(APIView):
    problem_statuses = (409,)  # NotTerminal: the journey is still running
    required_permissions = "books.view"

    @extend_schema(operation_id="journeys_result", responses={200: dict})
    def get(self, request, journey_id: str):
        run = get_run(request, journey_id)
        if run.phase == Phase.RUNNING:
            raise NotTerminal("The journey is still running.", extra={"phase": run.phase, "currentState": run.current_state})
        return Response(selectors.run_outcome(run))


class ApprovalDecisionSerializer(StrictSerializer):
    decision = serializers.ChoiceField(choices=JourneyApproval.Decision.choices)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")


class CancelSerializer(StrictSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class JourneyStepView(APIView):
    def required_permission(self, request) -> str:
        # The step "cancel" stops the run (who starts journeys); any other step is an approval decision.
        step = self.kwargs.get("step_id", self.kwargs.get("stepId"))
        return "journeys.start" if step == "cancel" else "journeys.decide"

    @extend_schema(operation_id="journeys_step", request=ApprovalDecisionSerializer, responses={200: dict})
    def post(self, request, journey_id: str, step_id: str):
        run = get_run(request, journey_id)
        actor = Actor.for_request(request)
        if step_id == "cancel":
            body = CancelSerializer(data=request.data if request.data else {})
            body.is_valid(raise_exception=True)
            run = engine.run_cancel(run=run, actor=actor, reason=body.validated_data["reason"] or "cancelled over the API")
            return Response(selectors.run_status(run))
        body = ApprovalDecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = engine.run_decide(
            run=run,
            step_id=step_id,
            decision=body.validated_data["decision"],
            comment=body.validated_data["comment"],
            user=request.user,
            actor=actor,
        )
        return Response(
            {**selectors.run_status(run), "decision": body.validated_data["decision"], "comment": body.validated_data["comment"]}
        )


def _decode_token(token: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(token.encode() + b"==").decode())
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed("Unknown page token.", field="pageToken") from exc


def _encode_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


class JourneyListView(APIView):
    required_permissions = "books.view"
    @extend_schema(
        operation_id="journeys_list",
        parameters=[
            OpenApiParameter("journeyName", str),
            OpenApiParameter("phase", str, enum=Phase.values),
            OpenApiParameter("tenantId", str),
            OpenApiParameter("subjectId", str),
            OpenApiParameter("waitingForApproval", bool),
            OpenApiParameter("pageToken", str),
            OpenApiParameter("pageSize", int),
        ],
        responses={200: dict},
    )
    def get(self, request):
        params = request.query_params
        runs = selectors.runs_for_tenant(request.tenant).select_related("parent")
        if params.get("journeyName"):
            runs = runs.filter(journey_name=params["journeyName"])
        if params.get("phase"):
            if params["phase"] not in Phase.values:
                raise ValidationFailed(f"phase must be one of {', '.join(Phase.values)}.", field="phase")
            runs = runs.filter(phase=params["phase"])
        if params.get("tenantId") and params["tenantId"] != request.tenant.slug:
            runs = runs.none()  # another tenant's runs are never visible
        if params.get("subjectId"):
            runs = runs.filter(subject_id=params["subjectId"])
        if params.get("waitingForApproval") in ("true", "1"):
            runs = runs.filter(phase=Phase.RUNNING, waiting_for="approval")
        try:
            size = min(max(int(params.get("pageSize", PAGE_SIZE_DEFAULT)), 1), PAGE_SIZE_MAX)
        except ValueError as exc:
            raise ValidationFailed("pageSize must be a number.", field="pageSize") from exc
        if params.get("pageToken"):
            runs = runs.filter(id__lt=_decode_token(params["pageToken"]))
        page = list(runs.order_by("-id")[: size + 1])
        body = {"items": [selectors.run_status(run) for run in page[:size]]}
        if len(page) > size:
            body["nextPageToken"] = _encode_token(page[size - 1].pk)
        return Response(body)
