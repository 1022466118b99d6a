"""HTTP routes of the audit trail (mounted at the root by gateway.urls)."""

from django.urls import path

from policy.audit.apis import (
    AuditCheckpointApi,
    AuditCheckpointLatestApi,
    AuditExportApi,
    AuditExportManifestApi,
    AuditPublicKeyApi,
)
from policy.audit.receipts_api import AuditReceiptApi

urlpatterns = [
    path("v1/audit/public-key", AuditPublicKeyApi.as_view(), name="audit-public-key"),
    path("v1/audit/checkpoints", AuditCheckpointLatestApi.as_view(), name="audit-checkpoint-latest"),
    path("v1/audit/checkpoints/<int:number>", AuditCheckpointApi.as_view(), name="audit-checkpoint"),
    path("v1/audit/receipts/<str:request_id>", AuditReceiptApi.as_view(), name="audit-receipt"),
    path("v1/audit/export", AuditExportApi.as_view(), name="audit-export"),
    path("v1/audit/exports/<int:export_id>/manifest", AuditExportManifestApi.as_view(), name="audit-export-manifest"),
]
