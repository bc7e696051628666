"""REST API for customers, subscriptions, charges and payments. Thin: validate, call a service, serialize."""

from __future__ import annotations

import django_filters
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import services, webhooks
from billing.lifecycle import CancellationSource, PaymentStatus
from billing.models import Charge, Customer, Payment, Subscription
from core.api.filters import UTCIsoDateTimeFilter
from core.api.serializers import (
    AmountField,
    CurrencyField,
    JSONObjectField,
    QuantityField,
    RateField,
    StrictModelSerializer,
    StrictSerializer,
    TenantScopedPrimaryKeyRelatedField,
    UnitAmountField,
    check_amounts,
)
from core.api.throttles import WebhookThrottle
from core.api.views import IdempotentCreateMixin, TenantScopedViewSet, validated


class _RawBodyParser(BaseParser):
    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read()


# --- Customers ----------------------------------------------------------------------------------
class CustomerSerializer(StrictModelSerializer):
    currency = CurrencyField()

    class Meta:
        model = Customer
        fields = [
            "id",
            "external_ref",
            "name",
            "email",
            "currency",
            "address_line1",
            "address_line2",
            "city",
            "postal_code",
            "country",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        # Uniqueness is checked by the database constraint (answered as 409), not a racy pre-query.
        validators = []

    def validate_external_ref(self, value):
        request = self.context["request"]
        clash = Customer.objects.filter(tenant=request.tenant, external_ref=value).exclude(
            pk=getattr(self.instance, "pk", None)
        )
        if value and clash.exists():
            raise serializers.ValidationError(
                "A customer with this external reference exists.", code="unique"
            )
        return value


class CustomerFilter(django_filters.FilterSet):
    externalRef = django_filters.CharFilter(field_name="external_ref")  # noqa: N815
    isActive = django_filters.BooleanFilter(field_name="is_active")  # noqa: N815
    currency = django_filters.CharFilter()

    class Meta:
        model = Customer
        fields = []


class CustomerViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    TenantScopedViewSet,
):
    required_permissions = {"read": "books.view", "write": "customers.manage"}
    queryset = Customer.objects.all()
    serializer_class = CustomerSerializer
    filterset_class = CustomerFilter

    def perform_create(self, serializer):
        serializer.instance = services.customer_create(
            tenant=self.request.tenant, actor=self.actor, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.customer_update(
            customer=serializer.instance, actor=self.actor, **serializer.validated_data
        )


class _MoneyRecordViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, IdempotentCreateMixin, TenantScopedViewSet):
    """List, read and create (idempotently, through `create_service`) one kind of money record; a
    detail action changes one record through one service (`_change`)."""

    # the billing service creating a record from the tenant, the actor and the validated fields
    create_service = None

    def perform_create_service(self, data):
        return type(self).create_service(tenant=self.request.tenant, actor=self.actor, **data)

    def _change(self, request, body_class, change):
        """Validate the body, then `change(record, body)` (one service call); answer the record."""
        record = self.get_object()
        body = validated(body_class, request)
        return Response(self.get_serializer(change(record, body)).data)


# --- Subscriptions ------------------------------------------------------------------------------
class SubscriptionSerializer(StrictModelSerializer):
    customer = TenantScopedPrimaryKeyRelatedField(queryset=Customer.objects.all())
    currency = CurrencyField()
    unit_price = UnitAmountField()
    quantity = QuantityField(required=False)
    tax_rate = RateField(required=False, allow_null=True)

    class Meta:
        model = Subscription
        fields = [
            "id",
            "customer",
            "plan_name",
            "unit_price",
            "quantity",
            "currency",
            "billing_cadence",
            "tax_rate",
            "status",
            "started_on",
            "cancelled_at",
            "cancellation_source",
            "created_at",
        ]
        read_only_fields = ["id", "status", "cancelled_at", "cancellation_source", "created_at"]


class SubscriptionCancelSerializer(StrictSerializer):
    source = serializers.ChoiceField(choices=CancellationSource.choices, default=CancellationSource.API)
    cancelled_at = serializers.DateTimeField(required=False)

    def validate_cancelled_at(self, value):
        if value > timezone.now():
            raise serializers.ValidationError("A cancellation cannot be in the future.")
        return value


class SubscriptionFilter(django_filters.FilterSet):
    customer = django_filters.NumberFilter(field_name="customer_id")
    status = django_filters.ChoiceFilter(choices=Subscription._meta.get_field("status").choices)

    class Meta:
        model = Subscription
        fields = []


class SubscriptionViewSet(_MoneyRecordViewSet):
    required_permissions = {"read": "books.view", "write": "subscriptions.manage"}
    queryset = Subscription.objects.all()
    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilter
    create_service = services.subscription_create

    @extend_schema(request=SubscriptionCancelSerializer, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._change(
            request,
            SubscriptionCancelSerializer,
            lambda subscription, body: services.subscription_cancel(
                subscription=subscription, actor=self.actor, source=body["source"], cancelled_at=body.get("cancelled_at")
            ),
        )


# --- Charges ------------------------------------------------------------------------------------
class ChargeSerializer(StrictModelSerializer):
    customer = TenantScopedPrimaryKeyRelatedField(queryset=Customer.objects.all())
    subscription = TenantScopedPrimaryKeyRelatedField(
        queryset=Subscription.objects.all(), required=False, allow_null=True
    )
    currency = CurrencyField()
    quantity = QuantityField(required=False)
    unit_amount = UnitAmountField()
    tax_rate = RateField(required=False, allow_null=True)
    details = JSONObjectField(required=False)

    class Meta:
        model = Charge
        fields = [
            "id",
            "customer",
            "subscription",
            "description",
            "quantity",
            "unit_amount",
            "currency",
            "tax_rate",
            "occurred_at",
            "details",
            "invoice",
            "created_at",
        ]
        read_only_fields = ["id", "invoice", "created_at"]


class ChargeFilter(django_filters.FilterSet):
    def filter_billed(self, queryset, name, value):
        return queryset.filter(invoice__isnull=not value)

    customer = django_filters.NumberFilter(field_name="customer_id")
    subscription = django_filters.NumberFilter(field_name="subscription_id")
    billed = django_filters.BooleanFilter(method="filter_billed")
    occurredFrom = UTCIsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")  # noqa: N815
    occurredTo = UTCIsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")  # noqa: N815

    class Meta:
        model = Charge
        fields = []


class ChargeViewSet(_MoneyRecordViewSet):
    required_permissions = {"read": "books.view", "write": "charges.manage"}
    queryset = Charge.objects.all()
    serializer_class = ChargeSerializer
    filterset_class = ChargeFilter
    create_service = services.charge_create


# --- Payments -----------------------------------------------------------------------------------
def _invoice_queryset():
    # The payment's own relation (Payment.invoice, declared by name): billing does not import invoicing.
    return Payment._meta.get_field("invoice").related_model.objects.all()


class PaymentSerializer(StrictModelSerializer):
    customer = TenantScopedPrimaryKeyRelatedField(queryset=Customer.objects.all())
    invoice = TenantScopedPrimaryKeyRelatedField(
        queryset=_invoice_queryset(), required=False, allow_null=True
    )
    currency = CurrencyField()
    amount = AmountField(positive=True)

    class Meta:
        model = Payment
        fields = [
            "id",
            "customer",
            "invoice",
            "method",
            "amount",
            "currency",
            "status",
            "rail_transaction_id",
            "reference",
            "failure_reason",
            "initiated_at",
            "processing_at",
            "completed_at",
            "failed_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "failure_reason",
            "initiated_at",
            "processing_at",
            "completed_at",
            "failed_at",
        ]
        validators = []

    def validate(self, attrs):
        check_amounts(attrs, attrs.get("currency"), "amount")
        return attrs


class PaymentTransitionSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=PaymentStatus.choices)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class PaymentFilter(django_filters.FilterSet):
    customer = django_filters.NumberFilter(field_name="customer_id")
    invoice = django_filters.NumberFilter(field_name="invoice_id")
    status = django_filters.ChoiceFilter(choices=PaymentStatus.choices)
    method = django_filters.ChoiceFilter(choices=Payment._meta.get_field("method").choices)

    class Meta:
        model = Payment
        fields = []


class PaymentViewSet(_MoneyRecordViewSet):
    required_permissions = {"read": "books.view", "write": "payments.manage"}
    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer
    filterset_class = PaymentFilter
    create_service = services.payment_create

    @extend_schema(request=PaymentTransitionSerializer, responses=PaymentSerializer)
    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        """Move the payment to its next status (pending → processing → completed | failed)."""
        return self._change(
            request,
            PaymentTransitionSerializer,
            lambda payment, body: services.payment_transition(
                payment=payment, actor=self.actor, status=body["status"], reason=body["reason"]
            ),
        )


# --- Payment-rail webhooks ----------------------------------------------------------------------
class PaymentWebhookView(APIView):
    """POST /api/v1/webhooks/payments/{provider}: a rail's signed event (no login: the HMAC
    signature is the authentication). Not in the client API schema: rails call it, clients don't."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [WebhookThrottle]
    parser_classes = [_RawBodyParser]

    @extend_schema(exclude=True)
    def post(self, request, provider: str):
        # The signature covers the exact bytes sent: read them before anything parses them.
        body = request.body
        result = webhooks.payment_webhook_receive(
            provider_slug=provider, signature_header=request.headers.get(webhooks.SIGNATURE_HEADER), body=body
        )
        return Response({"eventId": result.event_id, "outcome": result.outcome, "replayed": result.replayed})
