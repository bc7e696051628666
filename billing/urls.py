from rest_framework.routers import SimpleRouter

from billing import apis

router = SimpleRouter(trailing_slash=False)
router.register("customers", apis.CustomerViewSet, basename="customer")
router.register("subscriptions", apis.SubscriptionViewSet, basename="subscription")
router.register("charges", apis.ChargeViewSet, basename="charge")
router.register("payments", apis.PaymentViewSet, basename="payment")

urlpatterns = router.urls
