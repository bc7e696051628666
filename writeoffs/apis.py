"""Download of a write-off run's failure report (CSV), tenant-scoped."""

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.views import APIView

from core.errors import NotFound
from writeoffs import selectors


def csv_response(report) -> HttpResponse:
    response = HttpResponse(report.csv, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="write-off-{report.run.journey_id}-failures.csv"'
    return response


class WriteOffReportView(APIView):
    required_permissions = "books.view"
    @extend_schema(operation_id="writeoffs_report_csv", responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request, journey_id: str):
        report = selectors.report_for_run(tenant=request.tenant, journey_id=journey_id)
        if report is None:
            raise NotFound("No write-off report for this run (yet).")
        return csv_response(report)
