from django.urls import path

from writeoffs import apis, settings_apis

urlpatterns = [
    path("settings/write-offs", settings_apis.WriteOffSettingsView.as_view(), name="settings-write-offs"),
    path("write-off-runs/<str:journey_id>/report.csv", apis.WriteOffReportView.as_view(), name="writeoff-report-csv"),
]
