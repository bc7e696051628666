"""REST API for bank accounts, statements, bank entries, reconciliations and discrepancies."""

from __future__ import annotations

import django_filters
from djangorestframework_camel_case.parser import CamelCaseMultiPartParser
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from billing.models import Payment
from core.api.filters import UTCIsoDateTimeFilter
from core.api.serializers import (
    AmountField,
    CurrencyField,
    StrictModelSerializer,
    StrictSerializer,
    TenantScopedPrimaryKeyRelatedField,
)
from core.api.views import TenantScopedViewSet, validated
from invoicing.models import Invoice
from reconciliation import services
from reconciliation.models import (
    BankAccount,
    BankEntry,
    BankEntryStatus,
    BankStatement,
    DiscrepancyKind,
    MatchStatus,
    Reconciliation,
    ReconciliationStatus,
    StatementFormat,
)

# A statement file larger than this is refused before parsing (a 100,000-line CAMT.053 is ~60 MB).
MAX_STATEMENT_BYTES = 200 * 1024 * 1024


class ReconciliationSerializer(serializers.ModelSerializer):
    # Blank unless a discrepancy. Declared because a read-only model field loses allow_blank, and
    # the schema then refused the "" the API answers.
    discrepancy_kind = serializers.ChoiceField(
        choices=DiscrepancyKind.choices, allow_blank=True, read_only=True
    )

    class Meta:
        model = Reconciliation
        fields = [
            "id",
            "invoice",
            "payment",
            "bank_entry",
            "status",
            "discrepancy_kind",
            "rule",
            "amount",
            "currency",
            "difference",
            "note",
            "created_at",
            "resolved_at",
            "resolution_reason",
        ]
        read_only_fields = fields


# --- Bank accounts ------------------------------------------------------------------------------
class BankAccountSerializer(StrictModelSerializer):
    currency = CurrencyField()

    class Meta:
        model = BankAccount
        fields = ["id", "name", "iban", "bic", "currency", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators = []


class BankAccountViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, TenantScopedViewSet
):
    required_permissions = {"read": "books.view", "write": "statements.import"}
    queryset = BankAccount.objects.all()
    serializer_class = BankAccountSerializer

    def perform_create(self, serializer):
        serializer.instance = services.bank_account_create(
            tenant=self.request.tenant, actor=self.actor, **serializer.validated_data
        )


# --- Statements ---------------------------------------------------------------------------------
class BankStatementSerializer(serializers.ModelSerializer):
    class Meta:
        model = BankStatement
        fields = [
            "id",
            "bank_account",
            "format",
            "statement_ref",
            "file_name",
            "file_sha256",
            "entry_count",
            "new_entry_count",
            "imported_at",
        ]
        read_only_fields = fields


class StatementImportSerializer(BankStatementSerializer):
    """What an upload answers: the (first) statement, the counts of the whole upload (every member
    of an archive) and each statement it created, one per file of an archive."""

    entry_count = serializers.IntegerField(read_only=True)
    new_entry_count = serializers.IntegerField(read_only=True)
    statements = BankStatementSerializer(many=True, read_only=True)

    class Meta(BankStatementSerializer.Meta):
        fields = [*BankStatementSerializer.Meta.fields, "statements"]
        read_only_fields = fields


class StatementUploadSerializer(StrictSerializer):
    bank_account = TenantScopedPrimaryKeyRelatedField(queryset=BankAccount.objects.all())
    file = serializers.FileField(max_length=255, allow_empty_file=False)
    # Detected from the content when not given.
    format = serializers.ChoiceField(choices=StatementFormat.choices, required=False)

    def validate_file(self, value):
        if value.size > MAX_STATEMENT_BYTES:
            raise serializers.ValidationError(f"A statement file is at most {MAX_STATEMENT_BYTES} bytes.")
        return value


class BankStatementFilter(django_filters.FilterSet):
    bankAccount = django_filters.NumberFilter(field_name="bank_account_id")  # noqa: N815
    format = django_filters.ChoiceFilter(choices=StatementFormat.choices)
    importedFrom = UTCIsoDateTimeFilter(field_name="imported_at", lookup_expr="gte")  # noqa: N815
    importedTo = UTCIsoDateTimeFilter(field_name="imported_at", lookup_expr="lt")  # noqa: N815

    class Meta:
        model = BankStatement
        fields = []


class BankStatementViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    required_permissions = {"read": "books.view", "write": "statements.import"}
    queryset = BankStatement.objects.all()
    serializer_class = BankStatementSerializer
    filterset_class = BankStatementFilter
    parser_classes = [CamelCaseMultiPartParser]

    @extend_schema(
        request={"multipart/form-data": StatementUploadSerializer}, responses={201: StatementImportSerializer}
    )
    def create(self, request):
        """Import a CAMT.052/053/054, MT940/MT942 or CSV statement, or a zip archive of them: all or
        nothing, known entries are not duplicated; the format is read from the content."""
        body = validated(StatementUploadSerializer, request, context=self.get_serializer_context())
        upload = body["file"]
        result = services.statement_import(
            tenant=request.tenant,
            actor=self.actor,
            bank_account=body["bank_account"],
            stream=upload.file,
            file_name=upload.name or "",
            format=body.get("format"),
        )
        data = {
            **self.get_serializer(result.statement).data,
            "entry_count": result.entry_count,
            "new_entry_count": result.new_entry_count,
            "statements": self.get_serializer(result.statements, many=True).data,
        }
        return Response(data, status=status.HTTP_201_CREATED)


# --- Bank entries -------------------------------------------------------------------------------
class BankEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = BankEntry
        fields = [
            "id",
            "bank_account",
            "statement",
            "booking_date",
            "value_date",
            "amount",
            "currency",
            "bank_transaction_id",
            "counterparty_name",
            "counterparty_iban",
            "reference",
            "remittance_text",
            "end_to_end_id",
            "creditor_reference",
            "kind",
            "status",
            "match_status",
            "auto_match",
            "created_at",
        ]
        read_only_fields = fields


class AllocationSerializer(StrictSerializer):
    invoice = TenantScopedPrimaryKeyRelatedField(queryset=Invoice.objects.all())
    amount = AmountField(positive=True)


class ManualMatchSerializer(StrictSerializer):
    invoices = AllocationSerializer(many=True, min_length=1, max_length=100)
    # Required: no invoice is paid without a payment and a bank entry (the three-way rule).
    payment = TenantScopedPrimaryKeyRelatedField(queryset=Payment.objects.all())
    reason = serializers.CharField(max_length=500)


class BankEntryFilter(django_filters.FilterSet):
    bankAccount = django_filters.NumberFilter(field_name="bank_account_id")  # noqa: N815
    statement = django_filters.NumberFilter(field_name="statement_id")
    status = django_filters.ChoiceFilter(choices=BankEntryStatus.choices)
    matchStatus = django_filters.ChoiceFilter(field_name="match_status", choices=MatchStatus.choices)  # noqa: N815
    bookedFrom = django_filters.DateFilter(field_name="booking_date", lookup_expr="gte")  # noqa: N815
    bookedTo = django_filters.DateFilter(field_name="booking_date", lookup_expr="lte")  # noqa: N815
    amountMin = django_filters.NumberFilter(field_name="amount", lookup_expr="gte")  # noqa: N815
    amountMax = django_filters.NumberFilter(field_name="amount", lookup_expr="lte")  # noqa: N815
    reference = django_filters.CharFilter()

    class Meta:
        model = BankEntry
        fields = []


class BankEntryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Bank entries; `?matchStatus=unmatched` is the operator's queue."""

    required_permissions = {"read": "books.view", "match": "reconciliation.match"}
    queryset = BankEntry.objects.all()
    serializer_class = BankEntrySerializer
    filterset_class = BankEntryFilter

    @extend_schema(request=ManualMatchSerializer, responses={201: ReconciliationSerializer(many=True)})
    @action(detail=True, methods=["post"])
    def match(self, request, pk=None):
        """Match by hand: this entry and its payment pay the named invoices with the given amounts; an
        unallocated remainder of the entry becomes an amount_mismatch discrepancy."""
        entry = self.get_object()
        body = validated(ManualMatchSerializer, request, context=self.get_serializer_context())
        created = services.reconciliation_match_manual(
            tenant=request.tenant,
            actor=self.actor,
            bank_entry=entry,
            invoices=[(a["invoice"], a["amount"]) for a in body["invoices"]],
            payment=body["payment"],
            reason=body["reason"],
        )
        return Response(ReconciliationSerializer(created, many=True).data, status=status.HTTP_201_CREATED)


# --- Reconciliations and discrepancies ----------------------------------------------------------
class UnmatchSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=500)


class ReconciliationFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ReconciliationStatus.choices)
    discrepancyKind = django_filters.ChoiceFilter(  # noqa: N815
        field_name="discrepancy_kind", choices=DiscrepancyKind.choices
    )
    invoice = django_filters.NumberFilter(field_name="invoice_id")
    payment = django_filters.NumberFilter(field_name="payment_id")
    bankEntry = django_filters.NumberFilter(field_name="bank_entry_id")  # noqa: N815
    createdFrom = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")  # noqa: N815
    createdTo = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")  # noqa: N815
    amountMin = django_filters.NumberFilter(field_name="amount", lookup_expr="gte")  # noqa: N815
    amountMax = django_filters.NumberFilter(field_name="amount", lookup_expr="lte")  # noqa: N815

    class Meta:
        model = Reconciliation
        fields = []


class ReconciliationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    required_permissions = {"read": "books.view", "unmatch": "reconciliation.match"}
    queryset = Reconciliation.objects.all()
    serializer_class = ReconciliationSerializer
    filterset_class = ReconciliationFilter

    @extend_schema(request=UnmatchSerializer, responses=ReconciliationSerializer)
    @action(detail=True, methods=["post"])
    def unmatch(self, request, pk=None):
        """Undo a match or dismiss a discrepancy, with a reason; the entry returns to the queue."""
        body = validated(UnmatchSerializer, request)
        undone = services.reconciliation_unmatch(
            reconciliation=self.get_object(), actor=self.actor, reason=body["reason"]
        )
        return Response(self.get_serializer(undone).data)


class DiscrepancyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Open discrepancies: the reconciliations an operator has to look at."""

    required_permissions = "books.view"
    queryset = Reconciliation.objects.filter(status=ReconciliationStatus.DISCREPANCY)
    serializer_class = ReconciliationSerializer
    filterset_class = ReconciliationFilter
