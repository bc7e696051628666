from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing.apis import PaymentWebhookView
from core.api.not_found import api_not_found
from core.health import healthz, readyz

api_v1 = [
    path("", include("tenancy.urls")),
    path("", include("billing.urls")),
    path("", include("invoicing.urls")),
    path("", include("audit.urls")),
    path("", include("journeys.urls")),
    path("", include("consolidation.urls")),
    path("", include("reconciliation.urls")),
    path("webhooks/payments/<slug:provider>", PaymentWebhookView.as_view(), name="payment-webhook"),
    path("", include("writeoffs.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    re_path(r"^(?P<path>.*)$", api_not_found, name="api-not-found"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    # Tenants and memberships moved from billing to tenancy: old bookmarks still arrive.
    re_path(
        r"^admin/billing/(?P<rest>(?:tenant|membership)/.*)$",
        RedirectView.as_view(url="/admin/tenancy/%(rest)s", permanent=True, query_string=True),
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
]

# Problem JSON on /api/ paths for what Django answers itself (413, 500 with DEBUG off ...).
handler400 = "core.api.error_views.bad_request"
handler403 = "core.api.error_views.permission_denied"
handler404 = "core.api.error_views.page_not_found"
handler500 = "core.api.error_views.server_error"
