"""``GET /v1/audit/receipts/{request_id}``: a tenant's verifiable receipt for one of its own requests.

Authenticated by API key through ``GovernedApi`` (another tenant's
request id is a 404, exactly like an unknown one) and audited like every
tenant endpoint.  Until the event is sealed and its checkpoint written the
answer is ``202 Accepted`` with ``Retry-After`` (the receipt is being
prepared; nothing is wrong with the request, so not a 409).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from audit.errors import AuditReceiptNotFound
from audit.models import AuditEvent
from audit.services.receipts import audit_receipt_build
from core.openapi import problem_responses
from gateway.api.base import GovernedApi


class AuditReceiptApi(GovernedApi):
    """The receipt of the caller's own request: event, block, inclusion proof, signed checkpoint."""

    scope = None  # any key of the tenant may fetch the receipts of the tenant's requests
    endpoint = "audit.receipt"
    not_found_error = AuditReceiptNotFound

    class OutputSerializer(serializers.Serializer):
        kind = serializers.CharField()
        v = serializers.IntegerField()
        request_id = serializers.CharField()
        event = serializers.DictField(help_text="The audit event as recorded (canonical form).")
        block = serializers.DictField(help_text="Signed header, block hash and signature of the sealing block.")
        inclusion = serializers.DictField(help_text="RFC 6962 audit path: leaf_index, tree_size, leaf_hash, proof.")
        checkpoint = serializers.DictField(help_text="The block's signed checkpoint (GET /v1/audit/checkpoints/{n}).")

    class PendingSerializer(serializers.Serializer):
        status = serializers.CharField()
        request_id = serializers.CharField()
        retry_after = serializers.IntegerField()

    @extend_schema(
        operation_id="audit_receipt",
        responses={
            200: OutputSerializer,
            202: OpenApiResponse(PendingSerializer, description="Not sealed yet: retry after `Retry-After` seconds."),
            **problem_responses(401, 403, 404, 503),
        },
        parameters=[
            OpenApiParameter(
                "Retry-After", int, OpenApiParameter.HEADER, response=[202], description="Seconds until it is sealed."
            )
        ],
        tags=["audit"],
    )
    def get(self, request: Request, request_id: str) -> Response:
        """The receipt, or 202 with ``Retry-After`` until the request's event is sealed."""
        event = (
            self.scoped(AuditEvent.objects.filter(request_id=request_id, event_type=AuditEvent.Type.REQUEST))
            .only("seq", "request_id")
            .order_by("seq")
            .first()
        )
        if event is None:
            raise AuditReceiptNotFound(f"No request {request_id!r} of this tenant is in the audit trail.")
        outcome = audit_receipt_build(event=event)
        if outcome.receipt is None:
            body = {"status": "pending", "request_id": request_id, "retry_after": outcome.retry_after}
            return Response(body, status=202, headers={"Retry-After": str(outcome.retry_after)})
        return Response(outcome.receipt)
