"""REST API of consolidation: consolidated invoices, generate now, the scheduler, customer settings."""

from __future__ import annotations

from datetime import date

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.models import Customer, Payment
from consolidation import selectors, services
from consolidation.lifecycle import ConsolidatedStatus, KycStatus, PeriodType
from consolidation.models import ConsolidatedInvoice, ConsolidatedInvoiceLine, CustomerBillingPeriod
from consolidation.periods import key_start_range
from core.actors import Actor
from core.api.serializers import PlainIntegerField, StrictSerializer, TenantScopedPrimaryKeyRelatedField
from core.api.views import TenantScopedViewSet, validated
from core.errors import NotFound
from journeys.public import run_status
from reconciliation.models import BankEntry


class LineSerializer(serializers.ModelSerializer):
    invoice_url = serializers.SerializerMethodField()

    class Meta:
        model = ConsolidatedInvoiceLine
        fields = ["id", "source_invoice", "invoice_number", "invoice_date", "amount", "currency", "details", "invoice_url"]
        read_only_fields = fields

    def get_invoice_url(self, line) -> str:
        return f"/api/v1/invoices/{line.source_invoice_id}"


class ConsolidatedInvoiceSerializer(serializers.ModelSerializer):
    lines = LineSerializer(many=True, read_only=True)

    class Meta:
        model = ConsolidatedInvoice
        fields = [
            "id",
            "number",
            "customer",
            "period_type",
            "period_start",
            "period_end",
            "status",
            "currency",
            "total",
            "totals_by_currency",
            "invoice_count",
            "firs",
            "countries",
            "aircraft",
            "issue_date",
            "due_date",
            "sent_at",
            "paid_at",
            "payment_reference",
            "created_at",
            "updated_at",
            "lines",
        ]
        read_only_fields = fields


class ConsolidatedInvoiceFilter(django_filters.FilterSet):
    customer = django_filters.NumberFilter(field_name="customer_id")
    status = django_filters.MultipleChoiceFilter(choices=ConsolidatedStatus.choices)
    # period=2026-W04 or 2026-M01 (the numbering's period key), or a date the period contains.
    period = django_filters.CharFilter(method="filter_period")

    class Meta:
        model = ConsolidatedInvoice
        fields = []

    def filter_period(self, queryset, name, value):
        try:
            key = key_start_range(value)
        except ValueError as exc:
            raise serializers.ValidationError({"period": [str(exc)]}) from exc
        if key is not None:
            period_type, first, last = key
            return queryset.filter(period_type=period_type, period_start__range=(first, last))
        try:
            day = date.fromisoformat(value)
        except ValueError as exc:
            raise serializers.ValidationError({"period": ["Use 2026-W04, 2026-M01 or a date."]}) from exc
        return queryset.filter(period_start__lte=day, period_end__gte=day)


class GenerateSerializer(StrictSerializer):
    customer = TenantScopedPrimaryKeyRelatedField(queryset=Customer.objects.all())
    period_start = serializers.DateField(required=False, allow_null=True, default=None)


class SettleSerializer(StrictSerializer):
    bank_entry = TenantScopedPrimaryKeyRelatedField(queryset=BankEntry.objects.all())
    payment = TenantScopedPrimaryKeyRelatedField(queryset=Payment.objects.all())
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class ConsolidatedInvoiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    required_permissions = {"read": "books.view", "generate": "consolidation.manage", "settle": "reconciliation.match"}
    queryset = ConsolidatedInvoice.objects.select_related("customer").prefetch_related("lines")
    serializer_class = ConsolidatedInvoiceSerializer
    filterset_class = ConsolidatedInvoiceFilter

    @extend_schema(request=GenerateSerializer, responses={201: ConsolidatedInvoiceSerializer})
    @action(detail=False, methods=["post"])
    def generate(self, request):
        """Consolidate one customer's period now (default: the current one); 409/422 say why not."""
        body = validated(GenerateSerializer, request, context=self.get_serializer_context())
        generated = services.consolidated_generate(
            customer=body["customer"],
            actor=self.actor,
            user=request.user,
            period_start=body["period_start"],
        )
        data = ConsolidatedInvoiceSerializer(self.get_queryset().get(pk=generated.invoice.pk)).data
        return Response(
            {**data, "journeyId": generated.run.journey_id, "_links": {"journey": {"href": f"/api/v1/journeys/{generated.run.journey_id}"}}},
            status=status.HTTP_201_CREATED,
        )


    @extend_schema(request=SettleSerializer, responses={200: ConsolidatedInvoiceSerializer})
    @action(detail=True, methods=["post"])
    def settle(self, request, pk=None):
        """Pay the consolidated invoice with a bank entry and its payment: each source is settled by
        what it still owes through reconciliation (three-way). 400 names a bad bankEntry or payment."""
        ci = self.get_object()
        body = validated(SettleSerializer, request, context=self.get_serializer_context())
        services.consolidated_invoice_settle(
            consolidated_invoice=ci,
            actor=self.actor,
            bank_entry=body["bank_entry"],
            payment=body["payment"],
            reason=body["reason"],
        )
        return Response(ConsolidatedInvoiceSerializer(self.get_queryset().get(pk=ci.pk)).data)


class SchedulerStatusView(APIView):
    required_permissions = "books.view"
    @extend_schema(operation_id="consolidation_scheduler_status", responses={200: dict})
    def get(self, request):
        return Response(selectors.scheduler_status(tenant=request.tenant))


class SchedulerTriggerView(APIView):
    required_permissions = "consolidation.manage"
    @extend_schema(operation_id="consolidation_scheduler_trigger", request=None, responses={202: dict})
    def post(self, request):
        """Start today's consolidation journey for the caller's tenant now."""
        run = services.consolidation_trigger(tenant=request.tenant, actor=Actor.for_request(request), user=request.user)
        return Response(run_status(run), status=status.HTTP_202_ACCEPTED)


class CustomerSettingsSerializer(StrictSerializer):
    billing_period_enabled = serializers.BooleanField(source="enabled", required=False)
    billing_period_type = serializers.ChoiceField(source="period_type", choices=PeriodType.choices, required=False)
    billing_period_start_day = PlainIntegerField(source="start_day", required=False)
    kyc_status = serializers.ChoiceField(choices=KycStatus.choices, required=False)
    enabled_since = serializers.DateField(read_only=True, allow_null=True)
    disabled_on = serializers.DateField(read_only=True, allow_null=True)
    final_period_start = serializers.DateField(read_only=True, allow_null=True)
    final_period_end = serializers.DateField(read_only=True, allow_null=True)


class CustomerSettingsView(APIView):
    """A customer's consolidation settings (kept beside the customer, in consolidation)."""

    required_permissions = {"read": "books.view", "write": "consolidation.manage"}

    def _customer(self, request, customer_id: int) -> Customer:
        customer = Customer.objects.filter(tenant=request.tenant, pk=customer_id).first()
        if customer is None:
            raise NotFound("No such customer.")
        return customer

    def _body(self, customer: Customer) -> dict:
        row = CustomerBillingPeriod.objects.filter(customer=customer).first() or CustomerBillingPeriod(customer=customer)
        return {"customerId": customer.pk, **CustomerSettingsSerializer(row).data}

    @extend_schema(operation_id="consolidation_customer_settings", responses={200: CustomerSettingsSerializer})
    def get(self, request, customer_id: int):
        return Response(self._body(self._customer(request, customer_id)))

    @extend_schema(
        operation_id="consolidation_customer_settings_update",
        request=CustomerSettingsSerializer,
        responses={200: CustomerSettingsSerializer},
    )
    def put(self, request, customer_id: int):
        customer = self._customer(request, customer_id)
        body = validated(CustomerSettingsSerializer, request)
        services.customer_billing_period_update(customer=customer, actor=Actor.for_request(request), **body)
        return Response(self._body(customer))

    @extend_schema(
        operation_id="consolidation_customer_settings_patch",
        request=CustomerSettingsSerializer,
        responses={200: CustomerSettingsSerializer},
    )
    def patch(self, request, customer_id: int):
        return self.put(request, customer_id)
