"""The OpenAPI document: valid, warning-free, complete, and truthful about errors, security and examples."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.settings import api_settings

from core.errors import PROBLEM_CONTENT_TYPE
from gateway.openapi import EXAMPLE_DIGIT, GatewayAutoSchema, v2_paths_hook

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# Operations anyone may call: the protocol's health and server metadata, the audit trail's public key and checkpoints.
PUBLIC = {
    "v2_server_metadata",
    "v2_health_live",
    "v2_health_ready",
    "audit_public_key",
    "audit_checkpoint_latest",
    "audit_checkpoint",
}
# Staff-only operations: an admin session, never an API key.
STAFF = {"audit_export", "audit_export_manifest"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The document exactly as ``GET /v1/schema/`` serves it."""
    from django.test import Client

    response = Client().get("/v1/schema/?format=json")
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return json.loads(response.content)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema object as JSON Schema (``nullable`` becomes a ``null`` alternative)."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        if "type" in converted:
            converted["type"] = [converted["type"], "null"]
        else:
            converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


def assert_conforms(document: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    jsonschema.validate(value, json_schema({**schema, "components": document["components"]}))


def test_the_project_uses_the_gateway_schema_class_and_the_v2_hook():
    # Without these settings nested serializers collide into one component, views without their own
    # error declarations document no errors, and the Open Inference Protocol is missing altogether.
    assert api_settings.DEFAULT_SCHEMA_CLASS is GatewayAutoSchema
    hooks = settings.SPECTACULAR_SETTINGS.get("POSTPROCESSING_HOOKS", [])
    assert "gateway.openapi.v2_paths_hook" in hooks or v2_paths_hook in hooks


def test_the_served_document_is_a_valid_openapi_3_document(document):
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] and document["info"]["version"]
    try:
        from openapi_spec_validator import validate
    except ImportError:  # not a dependency; drf-spectacular carries the official OAS 3.0 JSON schema
        from drf_spectacular.validation import validate_schema as validate
    validate(document)


def test_generating_the_document_raises_no_warning_and_no_error(tmp_path):
    # --fail-on-warn turns every drf-spectacular warning (an unresolvable serializer, colliding
    # component names, a view it cannot introspect) into a failure.
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert out.read_text().startswith("openapi: 3.")


def _routes(patterns: list, prefix: str = "") -> list[str]:
    routes: list[str] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            routes += _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            routes.append(prefix + str(pattern.pattern))
    return routes


def test_every_api_route_is_documented(document):
    documented = set(document["paths"])
    routes = {
        "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        for route in _routes(get_resolver().url_patterns)
        if route.startswith(("v1/", "v2")) and not route.startswith(("v1/schema", "v1/docs"))
    }
    assert routes, "no API routes found"
    assert routes <= documented, sorted(routes - documented)


def test_security_schemes_are_the_bearer_header_and_x_api_key(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <api key>",
    }
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}


def test_every_operation_documents_how_it_authenticates(document):
    for path, method, operation in operations(document):
        label = f"{method.upper()} {path}"
        security = operation.get("security", [])
        if operation["operationId"] in PUBLIC:
            assert security in ([], [{}]), label
        elif operation["operationId"] in STAFF:
            assert security and not any({"ApiKeyAuth", "ApiKeyHeader"} & set(s) for s in security), label
        else:
            # Either header alone is enough: two alternatives, never one requirement naming both.
            assert {"ApiKeyAuth": []} in security and {"ApiKeyHeader": []} in security, (label, security)
            assert all(len(requirement) == 1 for requirement in security), (label, security)


def test_every_error_of_every_operation_is_a_documented_problem(document):
    for path, method, operation in operations(document):
        label = f"{method.upper()} {path}"
        responses = operation["responses"]
        errors = {status: response for status, response in responses.items() if status[0] in "45"}
        if operation["operationId"] not in PUBLIC:
            assert {"401", "403"} <= set(errors), (label, sorted(responses))
        for status, response in errors.items():
            content = response.get("content", {})
            if path.startswith("/v2"):
                # The protocol's own error shape: {"error": "..."} (plus code and request_id).
                if path != "/v2/health/ready":  # whose 503 is the readiness answer itself: {"ready": false}
                    schema = content["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/V2Error"}, (label, status)
            else:
                assert list(content) == [PROBLEM_CONTENT_TYPE], (label, status, list(content))
                assert content[PROBLEM_CONTENT_TYPE]["schema"] == {"$ref": "#/components/schemas/Problem"}
            assert response["description"], (label, status)
            assert response["headers"]["X-Request-ID"]["required"] is True, (label, status)
        if "401" in errors:
            assert errors["401"]["headers"]["WWW-Authenticate"]["required"] is True, label


def test_the_problem_schema_names_every_member_the_handler_writes(document):
    problem = document["components"]["schemas"]["Problem"]
    members = {"type", "title", "status", "detail", "code", "request_id"}
    assert set(problem["properties"]) == members and set(problem["required"]) == members


def test_component_names_are_qualified_by_their_view(document):
    names = set(document["components"]["schemas"])
    # drf-spectacular alone would call every nested OutputSerializer "Output" and keep only one.
    assert not names & {"Output", "Input", "OutputRequest", "InputRequest"}
    assert {"ModelPredictRequest", "ModelPredictResponse", "ModelsListResponse", "UsageGetResponse"} <= names


def test_predict_documents_its_body_examples_and_size_errors(document):
    operation = document["paths"]["/v1/models/{name}/predict"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True and list(body["content"]) == ["application/json"]
    request_schema = document["components"]["schemas"]["ModelPredictRequest"]
    assert request_schema["required"] == ["instances"]
    assert request_schema["additionalProperties"] is False  # unknown fields are refused with 400
    assert {"400", "413", "415", "429"} <= set(operation["responses"])
    example = body["content"]["application/json"]["examples"]["OneDigit"]["value"]
    assert example == {"instances": [EXAMPLE_DIGIT], "purpose": "research"}
    assert_conforms(document, body["content"]["application/json"]["schema"], example)
    ok = operation["responses"]["200"]
    answer = ok["content"]["application/json"]["examples"]["Prediction"]["value"]
    assert_conforms(document, ok["content"]["application/json"]["schema"], answer)
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "X-Request-ID"} <= set(ok["headers"])


def test_jobs_document_json_and_upload_bodies_examples_and_the_location_header(document):
    create = document["paths"]["/v1/jobs"]["post"]
    content = create["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    upload = document["components"]["schemas"][content["multipart/form-data"]["schema"]["$ref"].split("/")[-1]]
    assert upload["properties"]["file"]["format"] == "binary" and {"file", "model"} <= set(upload["required"])
    example = content["application/json"]["examples"]["TwoDigits"]["value"]
    assert_conforms(document, content["application/json"]["schema"], example)
    accepted = create["responses"]["202"]
    assert accepted["headers"]["Location"]["required"] is True
    assert_conforms(
        document,
        accepted["content"]["application/json"]["schema"],
        accepted["content"]["application/json"]["examples"]["Accepted"]["value"],
    )
    assert {"409", "413", "415", "429"} <= set(create["responses"])
    retrieve = document["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert_conforms(document, retrieve["schema"], retrieve["examples"]["Finished"]["value"])
    results = document["paths"]["/v1/jobs/{job_id}/results"]["get"]["responses"]["200"]
    assert list(results["content"]) == ["application/x-ndjson"]


def test_v2_infer_documents_the_protocol_request_with_an_example(document):
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    media = infer["requestBody"]["content"]["application/json"]
    assert_conforms(document, media["schema"], media["examples"]["one digit"]["value"])
    assert set(infer["responses"]["200"]["content"]) == {"application/json", "application/octet-stream"}


@pytest.mark.django_db
def test_the_documented_predict_example_is_answered_as_documented(document, client, digits, make_caller):
    caller = make_caller()
    operation = document["paths"]["/v1/models/{name}/predict"]["post"]
    example = operation["requestBody"]["content"]["application/json"]["examples"]["OneDigit"]["value"]
    response = client.post("/v1/models/digits/predict", data=example, content_type="application/json", **caller.headers)
    assert response.status_code == 200, response.content[:500]
    body = response.json()
    assert body["predictions"][0]["label"] == 0
    assert_conforms(document, operation["responses"]["200"]["content"]["application/json"]["schema"], body)


def test_the_interactive_docs_render(client):
    response = client.get("/v1/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "swagger-ui" in page.lower() and "/v1/docs/?script=" in page
    # The init script (with the schema URL) is served from the same origin, not inlined: the CSP forbids inline script.
    script = client.get("/v1/docs/?script=")
    assert script.status_code == 200 and "/v1/schema/" in script.content.decode()
