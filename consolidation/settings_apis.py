"""Tenant-admin API: the tenant's consolidation settings."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers

from consolidation import selectors, services
from core.api.serializers import StrictSerializer
from core.api.views import TenantSettingsView


class ConsolidationSettingsSerializer(StrictSerializer):
    number_prefix = serializers.CharField(required=False, max_length=16)
    final_invoice_on_disable = serializers.BooleanField(required=False)


@extend_schema_view(
    get=extend_schema(operation_id="settings_consolidation", responses={200: ConsolidationSettingsSerializer}),
    patch=extend_schema(operation_id="settings_consolidation_update", request=ConsolidationSettingsSerializer, responses={200: ConsolidationSettingsSerializer}),
)
class ConsolidationSettingsView(TenantSettingsView):
    serializer_class = ConsolidationSettingsSerializer

    def read(self, tenant):
        return selectors.tenant_settings(tenant.pk)

    def write(self, *, tenant, actor, **fields):
        return services.consolidation_settings_update(tenant=tenant, actor=actor, **fields)
