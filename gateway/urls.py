"""Root URL configuration.

Each app owns its own routes (``v1/...`` and the Open Inference Protocol's
``v2/...``); this module mounts them together with health, metrics, the
OpenAPI schema and Django admin, and installs the problem+json handlers.
The API routes live in :mod:`gateway.urls_api`, which ``api_urlconf`` names:
requests for them take the lean middleware stack (:mod:`gateway.stacks`).
"""

from django.contrib import admin
from django.urls import include, path

from audit import urls as audit_urls
from core import health
from gateway.docs import RedocView, SchemaView, SwaggerView
from gateway.metrics import metrics_view

handler400 = "gateway.error_pages.handler400"
handler403 = "gateway.error_pages.handler403"
handler404 = "gateway.error_pages.handler404"
handler500 = "gateway.error_pages.handler500"

# Requests that resolve here take the lean API middleware stack (gateway.stacks).
api_urlconf = "gateway.urls_api"

urlpatterns = [
    path("", include(api_urlconf)),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("v1/schema/", SchemaView.as_view(), name="schema"),
    path("v1/docs/", SwaggerView.as_view(url_name="schema"), name="docs"),
    path("v1/docs/redoc/", RedocView.as_view(url_name="schema"), name="redoc"),
    path("metrics", metrics_view, name="metrics"),
    path("", include("policy.urls")),
    path("", include(audit_urls.staff_urlpatterns)),
    path("", include("inference.urls")),
]
