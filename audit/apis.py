"""HTTP API of the audit trail: the public signing key and checkpoints, staff-only exports."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.errors import AuditCheckpointNotFound, StaffAuthenticationRequired
from audit.selectors import ExportFilters, audit_export_manifest_get, audit_public_key_info
from audit.services import audit_export_stream
from audit.services.checkpoints import checkpoint_get
from audit.services.compliance import EXPORT_PERMISSION
from audit.services.export import FORMATS
from core.openapi import problem_responses

CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}


class CanExportAudit(BasePermission):
    """Staff users holding ``audit.export_auditevent`` (e.g. the compliance officer group)."""

    message = "Exporting the audit trail needs a staff account with the export permission."

    def has_permission(self, request: Request, view: APIView) -> bool:
        """Anonymous callers get a 401 naming the admin login; others need staff plus the permission."""
        user = request.user
        if not (user and user.is_authenticated):
            raise StaffAuthenticationRequired("Log in to the admin (/admin/login/) with a staff account first.")
        return bool(user.is_staff and user.has_perm(EXPORT_PERMISSION))


def actor_of(user: Any) -> str:
    """How audit records name a staff user."""
    return f"staff:{user.get_username()}"


class AuditPublicKeyApi(APIView):
    """``GET /v1/audit/public-key``: the Ed25519 key that signs blocks, tombstones and manifests."""

    authentication_classes: list = []
    permission_classes: list = []

    class OutputSerializer(serializers.Serializer):
        algorithm = serializers.CharField()
        key_id = serializers.CharField(help_text="Hex SHA-256 of the raw public key.")
        fingerprint = serializers.CharField()
        public_key_pem = serializers.CharField()
        previous_key_ids = serializers.ListField(child=serializers.CharField())

    @extend_schema(operation_id="audit_public_key", auth=[], responses=OutputSerializer, tags=["audit"])
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(audit_public_key_info()).data)


class CheckpointOutputSerializer(serializers.Serializer):
    """A signed checkpoint, exactly as written to the checkpoint log."""

    kind = serializers.CharField()
    v = serializers.IntegerField()
    epoch = serializers.IntegerField()
    number = serializers.IntegerField(help_text="Sealed block number.")
    last_seq = serializers.IntegerField()
    block_hash = serializers.CharField()
    merkle_root = serializers.CharField()
    sealed_at = serializers.CharField()
    key_id = serializers.CharField()
    key_fingerprint = serializers.CharField()
    signature = serializers.CharField(help_text="Ed25519 over the canonical JSON of every other member.")


_EPOCH_PARAMETER = OpenApiParameter("epoch", int, required=False, description="Chain epoch (default: the current).")


class AuditCheckpointLatestApi(APIView):
    """``GET /v1/audit/checkpoints``: the newest signed checkpoint, public like the signing key.

    The body is the signed document itself: save it as it is, and
    ``verify_audit --checkpoint FILE`` or a receipt verifier checks it later
    with nothing but the public key.
    """

    authentication_classes: list = []
    permission_classes: list = []

    @staticmethod
    def epoch_of(request: Request) -> int | None:
        """``?epoch=`` as a number (anything else names no epoch: 404)."""
        text = request.query_params.get("epoch")
        if not text:
            return None
        if not text.isdecimal():
            raise AuditCheckpointNotFound("epoch must be a positive integer.")
        return int(text)

    @extend_schema(
        operation_id="audit_checkpoint_latest",
        auth=[],
        parameters=[_EPOCH_PARAMETER],
        responses={200: CheckpointOutputSerializer, **problem_responses(404)},
        tags=["audit"],
    )
    def get(self, request: Request) -> Response:
        return Response(checkpoint_get(epoch=self.epoch_of(request)))


class AuditCheckpointApi(AuditCheckpointLatestApi):
    """``GET /v1/audit/checkpoints/{number}``: block ``number``'s signed checkpoint (public)."""

    @extend_schema(
        operation_id="audit_checkpoint",
        auth=[],
        parameters=[_EPOCH_PARAMETER],
        responses={200: CheckpointOutputSerializer, **problem_responses(404)},
        tags=["audit"],
    )
    def get(self, request: Request, number: int) -> Response:
        return Response(checkpoint_get(number=number, epoch=self.epoch_of(request)))


class ExportFormatNegotiation(DefaultContentNegotiation):
    """``?format=`` picks the export's file format here, not a DRF renderer (which would 404)."""

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        return renderers[0], renderers[0].media_type


class AuditExportApi(APIView):
    """``GET /v1/audit/export``: stream an export (staff with the export permission)."""

    # A staff session only: HTTP Basic here was a password oracle outside the admin's lockout and second factor.
    authentication_classes = [SessionAuthentication]
    permission_classes = [CanExportAudit]
    content_negotiation_class = ExportFormatNegotiation

    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=list(FORMATS), default="csv")
        since = serializers.CharField(required=False, allow_blank=True, help_text="ISO-8601 date or date-time.")
        until = serializers.CharField(required=False, allow_blank=True, help_text="ISO-8601, exclusive.")
        tenant = serializers.CharField(required=False, allow_blank=True)
        model = serializers.CharField(required=False, allow_blank=True)
        event_type = serializers.CharField(required=False, allow_blank=True)
        decision = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(
        operation_id="audit_export",
        parameters=[InputSerializer],
        responses={200: OpenApiResponse(OpenApiTypes.BINARY, description="CSV or JSON Lines, streamed.")},
        tags=["audit"],
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        filters = ExportFilters.from_mapping(data)
        export, chunks = audit_export_stream(
            filters=filters, format=data["format"], actor=actor_of(request.user), source="api"
        )
        response = StreamingHttpResponse(chunks, content_type=CONTENT_TYPES[data["format"]])
        response["Content-Disposition"] = f'attachment; filename="audit-export-{export.pk}.{data["format"]}"'
        response["X-Audit-Export-Id"] = str(export.pk)
        response["Link"] = f'</v1/audit/exports/{export.pk}/manifest>; rel="describedby"'
        return response


class AuditExportManifestApi(APIView):
    """``GET /v1/audit/exports/{id}/manifest``: the signed manifest once the export finished."""

    # A staff session only: HTTP Basic here was a password oracle outside the admin's lockout and second factor.
    authentication_classes = [SessionAuthentication]
    permission_classes = [CanExportAudit]

    @extend_schema(
        operation_id="audit_export_manifest",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="Signed export manifest.")},
        tags=["audit"],
    )
    def get(self, request: Request, export_id: int) -> Response:
        return Response(audit_export_manifest_get(export_id=export_id))
