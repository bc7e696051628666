"""Tenant-admin API: the tenant's matching rules and tolerance per currency."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.actors import Actor
from core.api.serializers import StrictSerializer
from reconciliation import services
from reconciliation.services import DEFAULT_RULES


class ReconciliationSettingsSerializer(StrictSerializer):
    rules = serializers.ListField(child=serializers.ChoiceField(choices=list(DEFAULT_RULES)), required=False)
    # {"EUR": "0.05", "JPY": "5"}: amounts as strings, each in whole minor units of its currency.
    amount_tolerances = serializers.DictField(child=serializers.CharField(), required=False)
    bank_entry_grace_days = serializers.IntegerField(read_only=True)


class ReconciliationSettingsView(APIView):
    required_permissions = "settings.manage"

    def _body(self, tenant_id: int) -> dict:
        found = services.settings_for(tenant_id)
        return ReconciliationSettingsSerializer(
            {"rules": found.rules, "amount_tolerances": found.amount_tolerances, "bank_entry_grace_days": found.bank_entry_grace_days}
        ).data

    @extend_schema(operation_id="settings_reconciliation", responses={200: ReconciliationSettingsSerializer})
    def get(self, request):
        return Response(self._body(request.tenant.pk))

    @extend_schema(
        operation_id="settings_reconciliation_update",
        request=ReconciliationSettingsSerializer,
        responses={200: ReconciliationSettingsSerializer},
    )
    def patch(self, request):
        """Rules and/or tolerances; `amountTolerances` replaces the whole map (a currency not listed has 0)."""
        body = ReconciliationSettingsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.settings_update(tenant=request.tenant, actor=Actor.for_request(request), **body.validated_data)
        return Response(self._body(request.tenant.pk))
