"""REST v1 webhooks: a tenant registers, lists, reads and removes its own quota-threshold webhooks.

``POST /v1/webhooks`` answers the signing secret once (generated unless the
caller supplies one of at least 16 characters); it is never shown again.
``GET /v1/webhooks/{id}/deliveries`` is the tenant's delivery log.  Every
row is reached through ``GovernedApi.scoped`` on ``tenant_slug``: another
tenant's webhook is a 404 ``webhook_not_found``, exactly like a missing one.
Each request is audited by the base class with the webhook's id.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.openapi import problem_responses
from gateway.api.base import GovernedApi
from gateway.api.params import StrictCharField, StrictSerializer
from gateway.pipeline import body_json
from monitoring.errors import WebhookNotFound
from monitoring.models import WebhookDelivery, WebhookEndpoint
from monitoring.selectors import webhook_deliveries_of
from monitoring.services.webhook_endpoints import (
    NAME_MAX_LENGTH,
    SECRET_MAX_LENGTH,
    SECRET_MIN_LENGTH,
    TENANT_KINDS,
    URL_MAX_LENGTH,
    webhook_endpoint_create,
    webhook_endpoint_delete,
)
from tenants.principal import SCOPE_WEBHOOKS

# A registration is a few hundred bytes; anything far larger is refused before parsing.
BODY_MAX_BYTES = 4096


def webhook_body(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """The public representation of a webhook (never its secret)."""
    return {
        "id": endpoint.pk,
        "name": endpoint.name,
        "url": endpoint.url,
        "kinds": list(endpoint.kinds or []),
        "enabled": endpoint.enabled,
        "created_at": endpoint.created_at.isoformat(),
    }


def delivery_body(delivery: WebhookDelivery) -> dict[str, Any]:
    """One entry of a webhook's delivery log."""
    when = (delivery.last_attempt_at, delivery.next_attempt_at, delivery.delivered_at)
    return {
        "id": delivery.pk,
        "event_id": delivery.event.pk,
        "kind": delivery.event.kind,
        "data": delivery.event.payload,
        "created_at": delivery.event.created_at.isoformat(),
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error or None,
        "last_attempt_at": when[0].isoformat() if when[0] else None,
        "next_attempt_at": when[1].isoformat() if when[1] and delivery.status == "pending" else None,
        "delivered_at": when[2].isoformat() if when[2] else None,
    }


class WebhookSerializer(serializers.Serializer):
    """A tenant's webhook as the API shows it."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    url = serializers.CharField()
    kinds = serializers.ListField(child=serializers.ChoiceField(choices=list(TENANT_KINDS)))
    enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class WebhookCreatedSerializer(WebhookSerializer):
    """A new webhook, with its signing secret: shown this once, never again."""

    secret = serializers.CharField(help_text="HMAC-SHA256 key; verify `X-MaaS-Signature` with it. Shown once.")


class WebhookListSerializer(serializers.Serializer):
    """The tenant's webhooks."""

    webhooks = WebhookSerializer(many=True)


class WebhookDeliverySerializer(serializers.Serializer):
    """One delivery of one event to the webhook."""

    id = serializers.IntegerField()
    event_id = serializers.IntegerField(help_text="The `X-MaaS-Event-Id` header of every attempt.")
    kind = serializers.CharField()
    data = serializers.DictField(help_text="The event's payload, as signed and sent.")
    created_at = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices)
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)


class WebhookDeliveryListSerializer(serializers.Serializer):
    """The newest 100 deliveries of a webhook."""

    deliveries = WebhookDeliverySerializer(many=True)


EXAMPLE_WEBHOOK = {
    "id": 7,
    "name": "quota alerts",
    "url": "https://hooks.example.com/maas",
    "kinds": ["quota.threshold"],
    "enabled": True,
    "created_at": "2025-01-01T12:00:00+00:00",
}


class WebhooksApi(GovernedApi):
    """``POST /v1/webhooks`` (register) and ``GET /v1/webhooks`` (list this tenant's)."""

    scope = SCOPE_WEBHOOKS
    endpoint = {"post": "webhooks.create", "get": "webhooks.list"}
    tenant_field = "tenant_slug"
    not_found_error = WebhookNotFound

    class InputSerializer(StrictSerializer):
        name = StrictCharField(max_length=NAME_MAX_LENGTH)
        url = StrictCharField(
            max_length=URL_MAX_LENGTH, help_text="https only, to a public host (no credentials in the URL)."
        )
        kinds = serializers.ListField(
            child=serializers.ChoiceField(choices=list(TENANT_KINDS)),
            required=False,
            max_length=len(TENANT_KINDS),
            help_text="Default: every kind a tenant may subscribe to (`quota.threshold`).",
        )
        secret = StrictCharField(
            required=False,
            min_length=SECRET_MIN_LENGTH,
            max_length=SECRET_MAX_LENGTH,
            help_text="Your own signing key; omitted, one is generated and returned once.",
        )

        class Meta:
            reject_unknown_fields = True

    @extend_schema(
        operation_id="webhooks_create",
        request=InputSerializer,
        responses={201: WebhookCreatedSerializer, **problem_responses(400, 401, 403, 409, 413, 415, 503)},
        examples=[
            OpenApiExample(
                "quota alerts",
                request_only=True,
                value={"name": "quota alerts", "url": "https://hooks.example.com/maas"},
            ),
            OpenApiExample(
                "created",
                response_only=True,
                status_codes=["201"],
                value=EXAMPLE_WEBHOOK | {"secret": "whsec_3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            ),
        ],
        tags=["webhooks"],
    )
    def post(self, request: Request) -> Response:
        fields = self.validated(self.InputSerializer, body_json(request._request, max_bytes=BODY_MAX_BYTES))
        principal = self.principal
        endpoint, secret = webhook_endpoint_create(
            tenant_slug=principal.tenant_slug,
            name=fields["name"],
            url=fields["url"],
            kinds=fields.get("kinds"),
            secret=fields.get("secret"),
            actor=principal.actor,
        )
        self.call.extra_detail.update({"webhook_id": endpoint.pk, "url": endpoint.url, "kinds": endpoint.kinds})
        return Response(
            webhook_body(endpoint) | {"secret": secret}, status=201, headers={"Location": f"/v1/webhooks/{endpoint.pk}"}
        )

    @extend_schema(
        operation_id="webhooks_list",
        responses={200: WebhookListSerializer, **problem_responses(401, 403, 503)},
        tags=["webhooks"],
    )
    def get(self, request: Request) -> Response:
        endpoints = self.scoped(WebhookEndpoint.objects.all())
        return Response({"webhooks": [webhook_body(endpoint) for endpoint in endpoints]})


class WebhookDetailApi(GovernedApi):
    """``GET /v1/webhooks/{id}`` and ``DELETE /v1/webhooks/{id}`` (removes it and its delivery log)."""

    scope = SCOPE_WEBHOOKS
    endpoint = {"get": "webhooks.detail", "delete": "webhooks.delete"}
    tenant_field = "tenant_slug"
    not_found_error = WebhookNotFound

    @extend_schema(
        operation_id="webhooks_retrieve",
        responses={200: WebhookSerializer, **problem_responses(401, 403, 404, 503)},
        tags=["webhooks"],
    )
    def get(self, request: Request, webhook_id: str) -> Response:
        return Response(webhook_body(self.get_object_or_404(WebhookEndpoint.objects.all(), pk=webhook_id)))

    @extend_schema(
        operation_id="webhooks_destroy",
        responses={204: None, **problem_responses(401, 403, 404, 503)},
        tags=["webhooks"],
    )
    def delete(self, request: Request, webhook_id: str) -> Response:
        endpoint = self.get_object_or_404(WebhookEndpoint.objects.all(), pk=webhook_id)
        self.call.extra_detail.update(webhook_endpoint_delete(endpoint=endpoint, actor=self.principal.actor))
        return Response(status=204)


class WebhookDeliveriesApi(GovernedApi):
    """``GET /v1/webhooks/{id}/deliveries``: the newest 100 deliveries, with status, attempts and last answer."""

    scope = SCOPE_WEBHOOKS
    endpoint = "webhooks.deliveries"
    tenant_field = "tenant_slug"
    not_found_error = WebhookNotFound

    @extend_schema(
        operation_id="webhooks_deliveries",
        responses={200: WebhookDeliveryListSerializer, **problem_responses(401, 403, 404, 503)},
        tags=["webhooks"],
    )
    def get(self, request: Request, webhook_id: str) -> Response:
        endpoint = self.get_object_or_404(WebhookEndpoint.objects.all(), pk=webhook_id)
        return Response({"deliveries": [delivery_body(d) for d in webhook_deliveries_of(endpoint=endpoint)]})
