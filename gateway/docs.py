"""The API reference as tenant developers open it: Swagger UI, ReDoc and a schema a browser can show.

Swagger UI and ReDoc come from ``drf-spectacular-sidecar`` through the
gateway's own static files, so ``/v1/docs/`` works offline and is pinned to
the installed package version.  ``/v1/schema/`` keeps its OpenAPI media types
for tools, but a browser navigating to it (``Accept: text/html``) gets the
document inline (YAML as ``text/plain``, ``?format=json`` as
``application/json``) instead of a file download.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.request import Request
from rest_framework.response import Response

_INLINE_TYPES = {"yaml": "text/plain; charset=utf-8", "json": "application/json"}


def wants_html(request: Any) -> bool:
    """True for a browser navigation: it lists ``text/html`` among the types it accepts."""
    return "text/html" in request.META.get("HTTP_ACCEPT", "")


class SchemaView(SpectacularAPIView):
    """The OpenAPI document; shown inline in a browser, served with OpenAPI media types to tools."""

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        renderer = getattr(request, "accepted_renderer", None)
        if response.status_code == 200 and renderer is not None and wants_html(request):
            response.content_type = _INLINE_TYPES.get(renderer.format, response.content_type)
        return response


class SwaggerView(SpectacularSwaggerSplitView):
    """Swagger UI with its init script as a separate request (no inline script), plus links to the raw schema."""

    template_name = "drf_spectacular/gateway_swagger_ui.html"


class RedocView(SpectacularRedocView):
    """ReDoc, from the sidecar's static files."""
