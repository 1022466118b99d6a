"""OpenAPI (drf-spectacular) description of ``ApiKeyAuthentication``.

Imported from ``TenantsConfig.ready``; the security schemes match the ones the
project declares in ``SPECTACULAR_SETTINGS`` (bearer header or ``X-API-Key``).
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents the two ways to send a key."""

    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = ["ApiKeyAuth", "ApiKeyHeader"]

    def get_security_requirement(self, auto_schema):
        """Either header will do (two alternatives, not both at once)."""
        return [{"ApiKeyAuth": []}, {"ApiKeyHeader": []}]

    def get_security_definition(self, auto_schema):
        """Bearer token in ``Authorization``, or ``X-API-Key``."""
        return [
            {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <api key>"},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]
