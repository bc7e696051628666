from rest_framework.routers import SimpleRouter

from invoicing import apis

router = SimpleRouter(trailing_slash=False)
router.register("invoices", apis.InvoiceViewSet, basename="invoice")

urlpatterns = router.urls
