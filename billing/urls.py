from django.urls import path
from rest_framework.routers import SimpleRouter

from billing import apis, settings_apis

router = SimpleRouter(trailing_slash=False)
router.register("customers", apis.CustomerViewSet, basename="customer")
router.register("subscriptions", apis.SubscriptionViewSet, basename="subscription")
router.register("charges", apis.ChargeViewSet, basename="charge")
router.register("payments", apis.PaymentViewSet, basename="payment")

urlpatterns = [
    path("settings/payment-providers", settings_apis.PaymentProviderListView.as_view(), name="settings-payment-providers"),
    path("settings/payment-providers/<slug:slug>", settings_apis.PaymentProviderView.as_view(), name="settings-payment-provider"),
    path(
        "settings/payment-providers/<slug:slug>/rotate-secret",
        settings_apis.PaymentProviderRotateView.as_view(),
        name="settings-payment-provider-rotate",
    ),
    path(
        "settings/payment-providers/<slug:slug>/end-rotation",
        settings_apis.PaymentProviderEndRotationView.as_view(),
        name="settings-payment-provider-end-rotation",
    ),
    *router.urls,
]
