"""The API reference is served by the gateway itself; the schema opens in a browser."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_swagger_ui_comes_from_the_gateway_not_a_cdn(client):
    html = client.get("/v1/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "@latest" not in html
    assert "/v1/schema/?format=json" in html and "/v1/docs/redoc/" in html
    script = client.get("/v1/docs/?script=")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


def test_redoc_comes_from_the_gateway(client):
    html = client.get("/v1/docs/redoc/").content.decode()
    assert "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in html and "cdn" not in html.lower()


def test_schema_is_inline_for_a_browser_and_openapi_for_tools(client):
    browser = client.get("/v1/schema/", HTTP_ACCEPT="text/html,*/*;q=0.8")
    assert browser["Content-Type"].startswith("text/plain") and b"openapi:" in browser.content
    assert "attachment" not in browser.get("Content-Disposition", "")
    as_json = client.get("/v1/schema/?format=json", HTTP_ACCEPT="text/html,*/*;q=0.8")
    assert as_json["Content-Type"].startswith("application/json") and as_json.json()["openapi"].startswith("3.")
    tool = client.get("/v1/schema/")
    assert tool["Content-Type"].startswith("application/vnd.oai.openapi")


def test_production_static_storage_is_hashed_and_compressed_and_bootstrap_collects():
    from gateway.settings import core

    assert core.STORAGES["staticfiles"]["BACKEND"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert "whitenoise.middleware.WhiteNoiseMiddleware" in core.MIDDLEWARE
    from pathlib import Path

    bootstrap = Path(__file__).resolve().parents[2] / "gateway/management/commands/bootstrap.py"
    assert "static_collect(" in bootstrap.read_text()  # tests/gateway/test_static_collect.py tests it
