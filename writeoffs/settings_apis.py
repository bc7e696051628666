"""Tenant-admin API: where write-offs go (local ledger or Zuora: base URL and credentials) and who
hears about failures. Secrets are write-only: answers say whether one is set and when one changed."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.actors import Actor
from core.api.serializers import StrictSerializer
from writeoffs import services
from writeoffs.models import Provider, WriteOffSettings


class WriteOffSettingsSerializer(StrictSerializer):
    provider = serializers.ChoiceField(choices=Provider.choices, required=False)
    zuora_base_url = serializers.URLField(required=False, allow_blank=True, max_length=200)
    zuora_client_id = serializers.CharField(required=False, allow_blank=True, max_length=200)
    zuora_client_secret = serializers.CharField(required=False, write_only=True, max_length=500)
    reason_code = serializers.CharField(required=False, max_length=100)
    finance_emails = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    webhook_url = serializers.URLField(required=False, allow_blank=True, max_length=200)
    webhook_secret = serializers.CharField(required=False, write_only=True, max_length=200)
    has_zuora_client_secret = serializers.SerializerMethodField()
    has_webhook_secret = serializers.SerializerMethodField()
    secrets_changed_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def get_has_zuora_client_secret(self, config) -> bool:
        return bool(config.zuora_client_secret)

    def get_has_webhook_secret(self, config) -> bool:
        return bool(config.webhook_secret)


class WriteOffSettingsView(APIView):
    required_permissions = "settings.manage"

    @extend_schema(operation_id="settings_write_offs", responses={200: WriteOffSettingsSerializer})
    def get(self, request):
        config = WriteOffSettings.objects.filter(tenant=request.tenant).first() or WriteOffSettings(tenant=request.tenant)
        return Response(WriteOffSettingsSerializer(config).data)

    @extend_schema(operation_id="settings_write_offs_update", request=WriteOffSettingsSerializer, responses={200: WriteOffSettingsSerializer})
    def patch(self, request):
        """The fields sent change; a secret sent replaces the stored one (audited, never returned)."""
        body = WriteOffSettingsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        config = services.writeoff_settings_save(tenant=request.tenant, actor=Actor.for_request(request), **body.validated_data)
        return Response(WriteOffSettingsSerializer(config).data)
