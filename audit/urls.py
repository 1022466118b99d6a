"""HTTP routes of the audit trail (mounted at the root by gateway.urls)."""

from django.urls import path

from audit.apis import (
    AuditCheckpointApi,
    AuditCheckpointLatestApi,
    AuditExportApi,
    AuditExportManifestApi,
    AuditPublicKeyApi,
)

urlpatterns = [
    path("v1/audit/public-key", AuditPublicKeyApi.as_view(), name="audit-public-key"),
    path("v1/audit/checkpoints", AuditCheckpointLatestApi.as_view(), name="audit-checkpoint-latest"),
    path("v1/audit/checkpoints/<int:number>", AuditCheckpointApi.as_view(), name="audit-checkpoint"),
    path("v1/audit/export", AuditExportApi.as_view(), name="audit-export"),
    path("v1/audit/exports/<int:export_id>/manifest", AuditExportManifestApi.as_view(), name="audit-export-manifest"),
]
