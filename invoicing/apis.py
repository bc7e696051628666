"""REST API for invoices: drafts with inline items, issue and cancel actions, filters."""

from __future__ import annotations

from decimal import Decimal

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from billing.models import Charge, Customer
from core.api.serializers import (
    JSONObjectField,
    QuantityField,
    RateField,
    StrictSerializer,
    TenantScopedPrimaryKeyRelatedField,
    UnitAmountField,
)
from core.api.views import IdempotentCreateMixin, TenantScopedViewSet, validated
from invoicing import services
from invoicing.lifecycle import InvoiceStatus
from invoicing.models import Invoice, InvoiceItem, TaxItem


class TaxItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = TaxItem
        fields = [
            "id",
            "invoice_item",
            "name",
            "rate",
            "taxable_amount",
            "amount",
            "available_to_credit_amount",
        ]
        read_only_fields = fields


class InvoiceItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = InvoiceItem
        fields = [
            "id",
            "position",
            "description",
            "quantity",
            "unit_amount",
            "amount",
            "tax_rate",
            "available_to_credit_amount",
            "charge",
            "subscription",
            "details",
        ]
        read_only_fields = fields


class InvoiceSerializer(serializers.ModelSerializer):
    items = InvoiceItemSerializer(many=True, read_only=True)
    tax_items = TaxItemSerializer(many=True, read_only=True)
    # ISO 11649 reference customers are asked to quote when they pay (blank for a draft).
    creditor_reference = serializers.CharField(read_only=True)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "creditor_reference",
            "customer",
            "currency",
            "status",
            "issue_date",
            "due_date",
            "period_start",
            "period_end",
            "subtotal",
            "tax_total",
            "total",
            "amount_paid",
            "amount_credited",
            "balance",
            "memo",
            "sent_at",
            "paid_at",
            "cancelled_at",
            "written_off_at",
            "created_at",
            "updated_at",
            "items",
            "tax_items",
        ]
        read_only_fields = fields


class DraftLineSerializer(StrictSerializer):
    description = serializers.CharField(max_length=500)
    quantity = QuantityField(required=False, default=Decimal("1"))
    unit_amount = UnitAmountField()
    tax_rate = RateField(required=False, allow_null=True)
    details = JSONObjectField(required=False, default=dict)


class InvoiceCreateSerializer(StrictSerializer):
    customer = TenantScopedPrimaryKeyRelatedField(queryset=Customer.objects.all())
    period_start = serializers.DateField(required=False, allow_null=True)
    period_end = serializers.DateField(required=False, allow_null=True)
    memo = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    items = DraftLineSerializer(many=True, required=False, max_length=1000)
    charges = TenantScopedPrimaryKeyRelatedField(queryset=Charge.objects.all(), many=True, required=False)

    def validate(self, attrs):
        if not attrs.get("items") and not attrs.get("charges"):
            raise serializers.ValidationError(
                {"items": ["Give at least one item or charge."]}, code="required"
            )
        start, end = attrs.get("period_start"), attrs.get("period_end")
        if start and end and end < start:
            raise serializers.ValidationError({"period_end": ["The period ends before it starts."]})
        return attrs


class InvoiceIssueSerializer(StrictSerializer):
    issue_date = serializers.DateField(required=False)
    due_date = serializers.DateField(required=False)


class InvoiceCancelSerializer(StrictSerializer):
    reason = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default="cancelled over the API"
    )


class InvoiceFilter(django_filters.FilterSet):
    customer = django_filters.NumberFilter(field_name="customer_id")
    status = django_filters.MultipleChoiceFilter(choices=InvoiceStatus.choices)
    number = django_filters.CharFilter()
    # period=2026-10 selects the invoices whose billing period starts in that month.
    period = django_filters.CharFilter(method="filter_period")
    periodStart = django_filters.DateFilter(field_name="period_start")  # noqa: N815
    periodEnd = django_filters.DateFilter(field_name="period_end")  # noqa: N815
    dueBefore = django_filters.DateFilter(field_name="due_date", lookup_expr="lt")  # noqa: N815

    class Meta:
        model = Invoice
        fields = []

    def filter_period(self, queryset, name, value):
        import re

        match = re.fullmatch(r"([0-9]{4})-([0-9]{2})", value)
        if not match or int(match[1]) < 1 or not 1 <= int(match[2]) <= 12:
            raise serializers.ValidationError(
                {"period": ["Use YYYY-MM (years 0001 to 9999, months 01 to 12)."]}
            )
        return queryset.filter(period_start__year=int(match[1]), period_start__month=int(match[2]))


class InvoiceViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, IdempotentCreateMixin, TenantScopedViewSet
):
    required_permissions = {"read": "books.view", "write": "invoices.manage"}
    queryset = Invoice.objects.prefetch_related("items", "tax_items")
    serializer_class = InvoiceSerializer
    filterset_class = InvoiceFilter

    def get_serializer_class(self):
        return InvoiceCreateSerializer if self.action == "create" else InvoiceSerializer

    def _create(self, request):
        data = validated(InvoiceCreateSerializer, request, context=self.get_serializer_context())
        invoice = services.invoice_create_draft(
            tenant=request.tenant,
            actor=self.actor,
            customer=data["customer"],
            lines=[services.DraftLine(**line) for line in data.get("items", [])],
            charges=data.get("charges", []),
            period_start=data.get("period_start"),
            period_end=data.get("period_end"),
            memo=data["memo"],
        )
        return InvoiceSerializer(self.get_queryset().get(pk=invoice.pk)).data

    @extend_schema(request=InvoiceCreateSerializer, responses={201: InvoiceSerializer})
    def create(self, request, *args, **kwargs):
        return super().create(request, *args, **kwargs)

    @extend_schema(request=InvoiceIssueSerializer, responses=InvoiceSerializer)
    @action(detail=True, methods=["post"])
    def issue(self, request, pk=None):
        """draft → payment_due: numbered, dated and emailed to the customer."""
        invoice = self.get_object()
        body = validated(InvoiceIssueSerializer, request)
        invoice = services.invoice_issue(invoice=invoice, actor=self.actor, **body)
        return Response(InvoiceSerializer(self.get_queryset().get(pk=invoice.pk)).data)

    @extend_schema(request=InvoiceCancelSerializer, responses=InvoiceSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        invoice = self.get_object()
        body = validated(InvoiceCancelSerializer, request)
        invoice = services.invoice_cancel(
            invoice=invoice, actor=self.actor, reason=body["reason"]
        )
        return Response(InvoiceSerializer(self.get_queryset().get(pk=invoice.pk)).data)
