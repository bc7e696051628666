"""Tenant-admin API: the tenant's consolidation settings."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.actors import Actor
from consolidation import selectors, services
from core.api.serializers import StrictSerializer


class ConsolidationSettingsSerializer(StrictSerializer):
    number_prefix = serializers.CharField(required=False, max_length=16)
    final_invoice_on_disable = serializers.BooleanField(required=False)


class ConsolidationSettingsView(APIView):
    required_permissions = "settings.manage"

    @extend_schema(operation_id="settings_consolidation", responses={200: ConsolidationSettingsSerializer})
    def get(self, request):
        return Response(ConsolidationSettingsSerializer(selectors.tenant_settings(request.tenant.pk)).data)

    @extend_schema(
        operation_id="settings_consolidation_update",
        request=ConsolidationSettingsSerializer,
        responses={200: ConsolidationSettingsSerializer},
    )
    def patch(self, request):
        body = ConsolidationSettingsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        saved = services.consolidation_settings_update(tenant=request.tenant, actor=Actor.for_request(request), **body.validated_data)
        return Response(ConsolidationSettingsSerializer(saved).data)
