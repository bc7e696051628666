"""POST /api/v1/journeys/monthly-invoicing-batch/start: configure (upsert) the batch's schedule."""

from __future__ import annotations

import re

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.actors import Actor
from core.api.serializers import PlainIntegerField
from invoicing.workflows import BATCH_ID_PATTERN, batch_configure
from journeys.public import InvalidInterval, parse_interval, run_outcome

# RFC 3339 requires the offset: a time without one is ambiguous for a schedule.
_RFC3339_OFFSET = re.compile(r".*(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE)


def _duration(value: str) -> str:
    try:
        parse_interval(value)
    except InvalidInterval as exc:
        raise serializers.ValidationError(str(exc)) from exc
    return value


class MonthlyInvoicingConfigSerializer(serializers.Serializer):
    """MonthlyInvoicingConfigRequest; extra properties are accepted and kept, as the contract allows."""

    tenant_id = serializers.CharField(max_length=64)
    batch_id = serializers.RegexField(BATCH_ID_PATTERN, max_length=100)
    first_run_at = serializers.DateTimeField()
    interval = serializers.CharField(max_length=64)
    max_runs = PlainIntegerField(min_value=1, max_value=10000)
    grace_period_duration = serializers.CharField(max_length=64, required=False, default="P7D")
    reminder_gap_duration = serializers.CharField(max_length=64, required=False, default="P7D")

    def validate_tenant_id(self, value):
        if value != self.context["request"].tenant.slug:
            raise serializers.ValidationError("Unknown tenant.")
        return value

    def validate_first_run_at(self, value):
        raw = str(self.initial_data.get("first_run_at", ""))
        if not _RFC3339_OFFSET.match(raw.strip()):
            raise serializers.ValidationError("An RFC 3339 date-time with an offset is required (e.g. 2026-12-01T06:00:00Z).")
        return value

    validate_interval = staticmethod(_duration)
    validate_grace_period_duration = staticmethod(_duration)
    validate_reminder_gap_duration = staticmethod(_duration)


class MonthlyInvoicingBatchStartView(APIView):
    required_permissions = "journeys.start"
    @extend_schema(operation_id="monthlyInvoicingBatch_start", request=MonthlyInvoicingConfigSerializer, responses={200: dict})
    def post(self, request):
        body = MonthlyInvoicingConfigSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        extras = {k: v for k, v in request.data.items() if k not in body.fields} if isinstance(request.data, dict) else {}
        schedule = batch_configure(
            tenant=request.tenant,
            batch_id=data["batch_id"],
            first_run_at=data["first_run_at"],
            interval=data["interval"],
            max_runs=data["max_runs"],
            grace_period=data["grace_period_duration"],
            reminder_gap=data["reminder_gap_duration"],
            user=request.user,
            actor=Actor.for_request(request),
            extras=_camel(extras),
        )
        return Response(run_outcome(schedule.config_run))


def _camel(data: dict) -> dict:
    from djangorestframework_camel_case.util import camelize

    return dict(camelize(data))
