"""Root URL configuration.

Each app owns its own routes (``v1/...`` and the Open Inference Protocol's
``v2/...``); this module mounts them together with health, metrics, the
OpenAPI schema and Django admin, and installs the problem+json handlers.
"""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from core import health
from gateway.docs import RedocView, SchemaView, SwaggerView
from gateway.metrics import metrics_view

handler400 = "gateway.error_pages.handler400"
handler403 = "gateway.error_pages.handler403"
handler404 = "gateway.error_pages.handler404"
handler500 = "gateway.error_pages.handler500"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("v1/schema/", SchemaView.as_view(), name="schema"),
    path("v1/docs/", SwaggerView.as_view(url_name="schema"), name="docs"),
    path("v1/docs/redoc/", RedocView.as_view(url_name="schema"), name="redoc"),
    path("metrics", metrics_view, name="metrics"),
    path("", include("gateway.api.urls")),
    path("", include("policy.urls")),
    path("", include("audit.urls")),
    path("", include("inference.urls")),
]

if settings.BENCH_ENDPOINTS:
    urlpatterns += [path("", include("gateway.bench_views"))]
