from django.urls import path
from rest_framework.routers import SimpleRouter

from consolidation import apis, settings_apis

router = SimpleRouter(trailing_slash=False)
router.register("consolidated-invoices", apis.ConsolidatedInvoiceViewSet, basename="consolidated-invoice")

urlpatterns = [
    path("settings/consolidation", settings_apis.ConsolidationSettingsView.as_view(), name="settings-consolidation"),
    path("consolidation/scheduler", apis.SchedulerStatusView.as_view(), name="consolidation-scheduler"),
    path("consolidation/scheduler/trigger", apis.SchedulerTriggerView.as_view(), name="consolidation-trigger"),
    path(
        "consolidation/customers/<int:customer_id>/settings",
        apis.CustomerSettingsView.as_view(),
        name="consolidation-customer-settings",
    ),
    *router.urls,
]
