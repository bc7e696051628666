from django.urls import path
from rest_framework.routers import SimpleRouter

from invoicing import apis, journey_apis

router = SimpleRouter(trailing_slash=False)
router.register("invoices", apis.InvoiceViewSet, basename="invoice")

urlpatterns = [
    path(
        "journeys/monthly-invoicing-batch/start",
        journey_apis.MonthlyInvoicingBatchStartView.as_view(),
        name="monthly-invoicing-batch-start",
    ),
    *router.urls,
]
