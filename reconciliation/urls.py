from django.urls import path
from rest_framework.routers import SimpleRouter

from reconciliation import apis, settings_apis

router = SimpleRouter(trailing_slash=False)
router.register("bank-accounts", apis.BankAccountViewSet, basename="bank-account")
router.register("bank-statements", apis.BankStatementViewSet, basename="bank-statement")
router.register("bank-entries", apis.BankEntryViewSet, basename="bank-entry")
router.register("reconciliations", apis.ReconciliationViewSet, basename="reconciliation")
router.register("discrepancies", apis.DiscrepancyViewSet, basename="discrepancy")

urlpatterns = [
    path("settings/reconciliation", settings_apis.ReconciliationSettingsView.as_view(), name="settings-reconciliation"),
    *router.urls,
]
