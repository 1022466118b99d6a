"""OpenAPI (drf-spectacular) pieces shared by every view.

* :class:`ProblemSerializer` and :func:`problem_responses`: every error answer
  of the REST surface is an RFC 9457 document served as
  ``application/problem+json``, so that is how the schema documents it.
* :class:`GatewayAutoSchema`, the project's ``DEFAULT_SCHEMA_CLASS``.  It
  keeps the document honest for views that do not spell everything out:
  nested ``InputSerializer``/``OutputSerializer`` classes (one per view, the
  house style) get component names qualified by their view, so two views'
  ``OutputSerializer`` can never collapse into one ``Output`` component and
  silently describe each other's bodies; every API-key operation documents
  401/403/503 (and 400/404 where it takes parameters) as problems; every
  response documents ``X-Request-ID``.
* :func:`v2_paths_hook` (a ``POSTPROCESSING_HOOKS`` entry) adds the Open
  Inference Protocol paths, which are plain Django views that
  drf-spectacular cannot introspect, with the protocol's own error shape.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from core.errors import PROBLEM_CONTENT_TYPE
from core.openapi import ERROR_DESCRIPTIONS, ProblemSerializer, problem_responses

# A real handwritten zero (scikit-learn digits[0]) and the model's answer, for the examples.
EXAMPLE_DIGIT = [
    0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0, 0.0, 0.0, 13.0, 15.0, 10.0, 15.0, 5.0, 0.0,
    0.0, 3.0, 15.0, 2.0, 0.0, 11.0, 8.0, 0.0, 0.0, 4.0, 12.0, 0.0, 0.0, 8.0, 8.0, 0.0,
    0.0, 5.0, 8.0, 0.0, 0.0, 9.0, 8.0, 0.0, 0.0, 4.0, 11.0, 0.0, 1.0, 12.0, 7.0, 0.0,
    0.0, 2.0, 14.0, 5.0, 10.0, 12.0, 0.0, 0.0, 0.0, 0.0, 6.0, 13.0, 10.0, 0.0, 0.0, 0.0,
]  # fmt: skip
EXAMPLE_PROBABILITIES = [0.9987, 0.0, 0.0001, 0.0, 0.0002, 0.0003, 0.0004, 0.0, 0.0002, 0.0001]

API_KEY_SCHEMES = frozenset({"ApiKeyAuth", "ApiKeyHeader"})
API_KEY_SECURITY: list[dict[str, list[str]]] = [{"ApiKeyAuth": []}, {"ApiKeyHeader": []}]

# The statuses every API-key operation can answer whatever its own logic:
# authentication and scope (401/403) and an audit record that cannot be
# written (503: nothing is served unrecorded).
_AUTHENTICATED_ERRORS = (401, 403, 503)

#: The errors of an API-key operation that takes parameters and may be throttled.
PROBLEM_RESPONSES = problem_responses(400, 401, 403, 404, 429, 503)

#: Response headers shared by the governed operations (``response=`` picks the statuses).
RATE_LIMIT_HEADERS = [
    OpenApiParameter(name, int, OpenApiParameter.HEADER, response=[200, 202], description=description)
    for name, description in (
        ("RateLimit-Limit", "The tightest applicable limit (IETF RateLimit fields)."),
        ("RateLimit-Remaining", "What is left of it."),
        ("RateLimit-Reset", "Seconds until it resets."),
    )
]
SERVER_TIMING_HEADER = OpenApiParameter(
    "Server-Timing",
    str,
    OpenApiParameter.HEADER,
    response=[200, 202],
    description="W3C Server Timing: milliseconds per pipeline step (`auth`, `model`, `policy`, `quota`, `validate`, "
    "`infer`, `audit`) and `total`, on every answer to an authenticated caller (setting `SERVER_TIMING`).",
)
MODEL_NAME_PARAMETER = OpenApiParameter(
    "name",
    str,
    OpenApiParameter.PATH,
    description="Model name, as listed by `GET /v1/models`.",
    examples=[OpenApiExample("digits", value="digits")],
)
RETRY_AFTER_HEADER = OpenApiParameter(
    "Retry-After", int, OpenApiParameter.HEADER, response=[429, 503], description="Seconds to wait before retrying."
)


def _scheme_names(authenticator: object) -> set[str]:
    """The security scheme names a DRF authenticator is documented under (its drf-spectacular extension)."""
    scheme = OpenApiAuthenticationExtension.get_match(authenticator)
    if scheme is None:
        return set()
    return {scheme.name} if isinstance(scheme.name, str) else set(scheme.name)


class GatewayAutoSchema(AutoSchema):
    """The gateway's ``AutoSchema``: view-qualified component names and the errors every operation has."""

    def get_serializer_name(self, serializer: serializers.Serializer, direction: str) -> str:
        """``ModelPredictApi.InputSerializer`` -> ``ModelPredictRequest``, ``...OutputSerializer`` -> ``...Response``.

        drf-spectacular names components by class name alone, and the house
        style gives every view a nested ``OutputSerializer``: unqualified, all
        of them would share one ``Output`` component.
        """
        qualname = type(serializer).__qualname__
        if "<" in qualname or "." not in qualname:
            return type(serializer).__name__.lstrip("_")
        owner, *nested = qualname.split(".")
        parts = [owner.removesuffix("Api")]
        for index, part in enumerate(nested):
            part = part.removesuffix("Serializer")
            last = index == len(nested) - 1
            if part == "Input":
                continue  # drf-spectacular appends "Request" to request components
            if part == "Output":
                part = "Response" if last else ""
            parts.append(part)
        return "".join(parts)

    def get_auth(self) -> list[dict[str, list[str]]]:
        """A view's own authenticators when it has some; the API-key schemes otherwise.

        Views without DRF authenticators authenticate inside the governed
        pipeline (the global ``SECURITY``); views with their own (staff
        exports: an admin session) do not accept API keys, so the global
        schemes must not be advertised for them.
        """
        auths = super().get_auth()
        authenticators = self.view.get_authenticators()
        if authenticators and not any(_scheme_names(a) & API_KEY_SCHEMES for a in authenticators):
            auths = [a for a in auths if a not in API_KEY_SECURITY]
        unique: list[dict[str, list[str]]] = []
        for requirement in auths:
            if requirement not in unique:
                unique.append(requirement)
        return unique

    def _map_basic_serializer(self, serializer: serializers.Serializer, direction: str) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        # Views that refuse unknown body fields say so (``class Meta: reject_unknown_fields = True``),
        # so clients and fuzzers know an extra member is an error, not ignored.
        if direction == "request" and getattr(getattr(serializer, "Meta", None), "reject_unknown_fields", False):
            schema["additionalProperties"] = False
        return schema

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        auth = self.get_auth()
        if not auth or {} in auth:
            return responses  # public operation: no key to refuse
        statuses = list(_AUTHENTICATED_ERRORS)
        has_path_parameters = "{" in self.path
        has_input = self.method in ("POST", "PUT", "PATCH") or any(
            p.get("in") == "query" for p in self._get_parameters()
        )
        if has_input:
            statuses.append(400)
        if has_path_parameters:
            statuses.append(404)
        for status in sorted(statuses):
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(
                    OpenApiResponse(ProblemSerializer, description=ERROR_DESCRIPTIONS[status]),
                    str(status),
                    [PROBLEM_CONTENT_TYPE],
                    direction,
                )
        return dict(sorted(responses.items()))

    def _get_response_headers_for_code(self, status_code: str, direction: str = "response") -> dict[str, Any]:
        headers = super()._get_response_headers_for_code(status_code, direction)
        # RequestContextMiddleware stamps every answer, errors included.
        headers.setdefault(
            "X-Request-ID",
            {"schema": {"type": "string"}, "required": True, "description": "The request id (also in problem bodies)."},
        )
        if status_code == "401":
            headers.setdefault(
                "WWW-Authenticate", {"schema": {"type": "string"}, "required": True, "description": "Bearer challenge."}
            )
        return headers


# --- Open Inference Protocol (v2) ----------------------------------------------------------------
# gateway/api/v2.py serves plain Django views (the protocol's shapes, not DRF's), which drf-spectacular
# cannot introspect; their contract is written out here, in OpenAPI's own notation.
_V2_OPENAPI = yaml.safe_load(
    r"""
x-responses:
  error: &error
    description: The protocol's error shape (`code` and `request_id` are the gateway's additions).
    headers: &request-id {X-Request-ID: {schema: {type: string}, required: true}}
    content: {application/json: {schema: {$ref: "#/components/schemas/V2Error"}}}
  unauthorized: &unauthorized
    <<: *error
    headers: {<<: *request-id, WWW-Authenticate: {schema: {type: string}, required: true}}
  metadata-errors: &metadata-errors {"401": *unauthorized, "403": *error, "404": *error, "503": *error}
x-parameters:
  name: &name {in: path, name: name, required: true, schema: {type: string}, example: digits}
  version: &version {in: path, name: version, required: true, schema: {type: string}, example: "1"}
  purpose: &purpose {in: header, name: X-Purpose, required: false, schema: {type: string, maxLength: 100}}
x-operations:
  metadata: &metadata
    tags: [v2]
    security: [{ApiKeyAuth: []}, {ApiKeyHeader: []}]
    responses:
      "200":
        description: Model metadata.
        headers: *request-id
        content: {application/json: {schema: {$ref: "#/components/schemas/V2ModelMetadata"}}}
      <<: *metadata-errors
  ready: &ready
    tags: [v2]
    security: [{ApiKeyAuth: []}, {ApiKeyHeader: []}]
    responses:
      "200":
        description: The model is loaded and servable.
        headers: *request-id
        content:
          application/json:
            schema:
              type: object
              properties: {name: {type: string}, ready: {type: boolean}}
              required: [name, ready]
      <<: *metadata-errors
  infer: &infer
    tags: [v2]
    security: [{ApiKeyAuth: []}, {ApiKeyHeader: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/V2InferenceRequest"}
          examples:
            one digit:
              value:
                id: example-1
                parameters: {purpose: research}
                inputs:
                  - name: pixels
                    shape: [1, 64]
                    datatype: FP32
                    data: [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12,
                           0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0,
                           0, 0, 6, 13, 10, 0, 0, 0]
    responses:
      "200":
        description: The outputs (JSON; binary tensor data after the JSON header when requested).
        headers: *request-id
        content:
          application/json: {schema: {$ref: "#/components/schemas/V2InferenceResponse"}}
          application/octet-stream: {schema: {type: string, format: binary}}
      "400": *error
      "401": *unauthorized
      "403": *error
      "404": *error
      "413": *error
      "429": *error
      "503": *error
paths:
  /v2:
    get:
      operationId: v2_server_metadata
      tags: [v2]
      security: []
      responses:
        "200":
          description: Server name, version and protocol extensions.
          headers: *request-id
          content:
            application/json:
              schema:
                type: object
                properties:
                  name: {type: string}
                  version: {type: string}
                  extensions: {type: array, items: {type: string}}
                required: [name, version, extensions]
  /v2/health/live:
    get:
      operationId: v2_health_live
      tags: [v2]
      security: []
      responses:
        "200":
          description: The server is live.
          headers: *request-id
          content:
            application/json: {schema: {type: object, properties: {live: {type: boolean}}, required: [live]}}
  /v2/health/ready:
    get:
      operationId: v2_health_ready
      tags: [v2]
      security: []
      responses:
        "200": &readiness
          description: Ready to serve.
          headers: *request-id
          content:
            application/json: {schema: {type: object, properties: {ready: {type: boolean}}, required: [ready]}}
        "503": {<<: *readiness, description: Not ready (a dependency is down).}
  /v2/models/{name}:
    get: {<<: *metadata, operationId: v2_model_metadata, parameters: [*name]}
  /v2/models/{name}/versions/{version}:
    get: {<<: *metadata, operationId: v2_model_version_metadata, parameters: [*name, *version]}
  /v2/models/{name}/ready:
    get: {<<: *ready, operationId: v2_model_ready, parameters: [*name]}
  /v2/models/{name}/versions/{version}/ready:
    get: {<<: *ready, operationId: v2_model_version_ready, parameters: [*name, *version]}
  /v2/models/{name}/infer:
    post: {<<: *infer, operationId: v2_infer, parameters: [*name, *purpose]}
  /v2/models/{name}/versions/{version}/infer:
    post: {<<: *infer, operationId: v2_version_infer, parameters: [*name, *version, *purpose]}
components:
  schemas:
    V2Error:
      type: object
      properties: {error: {type: string}, code: {type: string}, request_id: {type: string}}
      required: [error]
    V2TensorMetadata:
      type: object
      properties: {name: {type: string}, datatype: {type: string}, shape: {type: array, items: {type: integer}}}
      required: [name, datatype, shape]
    V2ModelMetadata:
      type: object
      properties:
        name: {type: string}
        versions: {type: array, items: {type: string}}
        platform: {type: string}
        inputs: {type: array, items: {$ref: "#/components/schemas/V2TensorMetadata"}}
        outputs: {type: array, items: {$ref: "#/components/schemas/V2TensorMetadata"}}
      required: [name, platform, inputs, outputs]
    V2InferenceRequest:
      type: object
      required: [inputs]
      properties:
        id: {type: string}
        parameters:
          type: object
          properties:
            purpose: {type: string, maxLength: 100, nullable: true, description: "Overridden by `X-Purpose`."}
            binary_data_output: {type: boolean}
        inputs:
          type: array
          minItems: 1
          maxItems: 1
          items:
            type: object
            required: [name, shape, datatype]
            properties:
              name: {type: string, description: "The model's input name (see the metadata)."}
              shape: {type: array, minItems: 2, maxItems: 2, items: {type: integer, minimum: 0}}
              datatype:
                type: string
                enum: [UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64]
              parameters: {type: object, properties: {binary_data_size: {type: integer, minimum: 0}}}
              data: {type: array, description: Flat (row-major) or nested numbers.}
        outputs:
          type: array
          minItems: 1
          items:
            type: object
            required: [name]
            properties:
              name: {type: string, enum: [probabilities, label]}
              parameters: {type: object, properties: {binary_data: {type: boolean}}}
    V2InferenceResponse:
      type: object
      required: [model_name, outputs]
      properties:
        model_name: {type: string}
        model_version: {type: string}
        id: {type: string}
        parameters: {type: object}
        outputs:
          type: array
          items:
            type: object
            required: [name, datatype, shape]
            properties:
              name: {type: string}
              datatype: {type: string}
              shape: {type: array, items: {type: integer}}
              parameters: {type: object}
              data: {type: array}
"""
)


def v2_paths_hook(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular ``POSTPROCESSING_HOOKS`` entry: add the v2 paths and their components."""
    spec = copy.deepcopy(_V2_OPENAPI)
    result.setdefault("paths", {}).update(spec["paths"])
    result.setdefault("components", {}).setdefault("schemas", {}).update(spec["components"]["schemas"])
    return result
