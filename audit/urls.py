"""HTTP routes of the audit trail (mounted at the root by gateway.urls).

The public routes (the signing key, checkpoints: no key, no session) are
served on the lean API stack (``gateway.urls_api``); the exports honour a
staff session and stay on the full one.
"""

from django.urls import path

from audit.apis import (
    AuditCheckpointApi,
    AuditCheckpointLatestApi,
    AuditExportApi,
    AuditExportManifestApi,
    AuditPublicKeyApi,
)

public_urlpatterns = [
    path("v1/audit/public-key", AuditPublicKeyApi.as_view(), name="audit-public-key"),
    path("v1/audit/checkpoints", AuditCheckpointLatestApi.as_view(), name="audit-checkpoint-latest"),
    path("v1/audit/checkpoints/<int:number>", AuditCheckpointApi.as_view(), name="audit-checkpoint"),
]
staff_urlpatterns = [
    path("v1/audit/export", AuditExportApi.as_view(), name="audit-export"),
    path("v1/audit/exports/<int:export_id>/manifest", AuditExportManifestApi.as_view(), name="audit-export-manifest"),
]
urlpatterns = public_urlpatterns + staff_urlpatterns
