"""Tenant-admin API of billing: the tenant's memberships and roles, and its payment rails' webhook
settings. Secrets are write-only: answers say whether one is set and when it last changed."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import webhooks
from billing.models import PaymentProvider
from core.actors import Actor
from core.api.serializers import StrictSerializer
from core.api.views import validated
from core.errors import NotFound


# --- Payment rails ---------------------------------------------------------------------------------
class PaymentProviderSerializer(serializers.ModelSerializer):
    has_secret = serializers.SerializerMethodField()
    has_previous_secret = serializers.SerializerMethodField()

    class Meta:
        model = PaymentProvider
        fields = ["slug", "name", "is_active", "has_secret", "has_previous_secret", "secret_rotated_at", "created_at"]
        read_only_fields = fields

    def get_has_secret(self, provider) -> bool:
        return bool(provider.signing_secret)

    def get_has_previous_secret(self, provider) -> bool:
        return bool(provider.previous_signing_secret)


class PaymentProviderCreateSerializer(StrictSerializer):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=200)
    signing_secret = serializers.CharField(max_length=200, write_only=True)
    is_active = serializers.BooleanField(default=True)


class PaymentProviderUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    is_active = serializers.BooleanField(required=False)


class SecretSerializer(StrictSerializer):
    signing_secret = serializers.CharField(max_length=200, write_only=True)


def _provider(request, slug: str) -> PaymentProvider:
    found = PaymentProvider.objects.filter(tenant=request.tenant, slug=slug).first()
    if found is None:
        raise NotFound("No such payment provider.")
    return found


class PaymentProviderListView(APIView):
    required_permissions = "settings.manage"

    @extend_schema(operation_id="settings_payment_providers_list", responses={200: PaymentProviderSerializer(many=True)})
    def get(self, request):
        rows = PaymentProvider.objects.filter(tenant=request.tenant)
        return Response(PaymentProviderSerializer(rows, many=True).data)

    @extend_schema(
        operation_id="settings_payment_providers_create",
        request=PaymentProviderCreateSerializer,
        responses={201: PaymentProviderSerializer},
    )
    def post(self, request):
        body = validated(PaymentProviderCreateSerializer, request)
        provider = webhooks.payment_provider_create(tenant=request.tenant, actor=Actor.for_request(request), **body)
        return Response(PaymentProviderSerializer(provider).data, status=status.HTTP_201_CREATED)


class PaymentProviderView(APIView):
    required_permissions = "settings.manage"

    @extend_schema(operation_id="settings_payment_provider", responses={200: PaymentProviderSerializer})
    def get(self, request, slug: str):
        return Response(PaymentProviderSerializer(_provider(request, slug)).data)

    @extend_schema(
        operation_id="settings_payment_provider_update",
        request=PaymentProviderUpdateSerializer,
        responses={200: PaymentProviderSerializer},
    )
    def patch(self, request, slug: str):
        provider = _provider(request, slug)
        body = validated(PaymentProviderUpdateSerializer, request)
        for name, value in body.items():
            setattr(provider, name, value)
        webhooks.payment_provider_save(provider=provider, actor=Actor.for_request(request))
        return Response(PaymentProviderSerializer(provider).data)


class PaymentProviderRotateView(APIView):
    required_permissions = "settings.manage"

    @extend_schema(operation_id="settings_payment_provider_rotate_secret", request=SecretSerializer, responses={200: PaymentProviderSerializer})
    def post(self, request, slug: str):
        """A new signing secret; the current one stays accepted until end-rotation."""
        body = validated(SecretSerializer, request)
        provider = webhooks.payment_provider_rotate_secret(
            provider=_provider(request, slug), secret=body["signing_secret"], actor=Actor.for_request(request)
        )
        return Response(PaymentProviderSerializer(provider).data)


class PaymentProviderEndRotationView(APIView):
    required_permissions = "settings.manage"

    @extend_schema(operation_id="settings_payment_provider_end_rotation", request=None, responses={200: PaymentProviderSerializer})
    def post(self, request, slug: str):
        """Stop accepting the previous signing secret."""
        provider = webhooks.payment_provider_end_rotation(provider=_provider(request, slug), actor=Actor.for_request(request))
        return Response(PaymentProviderSerializer(provider).data)
