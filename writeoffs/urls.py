from django.urls import path

from writeoffs import apis

urlpatterns = [
    path("write-off-runs/<str:journey_id>/report.csv", apis.WriteOffReportView.as_view(), name="writeoff-report-csv"),
]
