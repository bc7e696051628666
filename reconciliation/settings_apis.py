"""Tenant-admin API: the tenant's matching rules and tolerance per currency."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers

from core.api.serializers import StrictSerializer
from core.api.views import TenantSettingsView
from reconciliation import services
from reconciliation.services import DEFAULT_RULES


class ReconciliationSettingsSerializer(StrictSerializer):
    rules = serializers.ListField(child=serializers.ChoiceField(choices=list(DEFAULT_RULES)), required=False)
    # {"EUR": "0.05", "JPY": "5"}: amounts as strings, each in whole minor units of its currency.
    amount_tolerances = serializers.DictField(child=serializers.CharField(), required=False)
    bank_entry_grace_days = serializers.IntegerField(read_only=True)


@extend_schema_view(
    get=extend_schema(operation_id="settings_reconciliation", responses={200: ReconciliationSettingsSerializer}),
    patch=extend_schema(operation_id="settings_reconciliation_update", description="Rules and/or tolerances; `amountTolerances` replaces the whole map (a currency not listed has 0).", request=ReconciliationSettingsSerializer, responses={200: ReconciliationSettingsSerializer}),
)
class ReconciliationSettingsView(TenantSettingsView):
    serializer_class = ReconciliationSettingsSerializer

    def read(self, tenant):
        found = services.settings_for(tenant.pk)
        return {"rules": found.rules, "amount_tolerances": found.amount_tolerances, "bank_entry_grace_days": found.bank_entry_grace_days}

    def write(self, *, tenant, actor, **fields):
        services.settings_update(tenant=tenant, actor=actor, **fields)
        return self.read(tenant)
