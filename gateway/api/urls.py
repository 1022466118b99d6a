"""URL wiring of the API-key surfaces: REST v1 (models, jobs, webhooks, usage, keys, receipts) and Open Inference v2."""

from django.urls import path

from gateway.api import jobs, receipts, tenants, v1, v2, webhooks

urlpatterns = [
    path("v1/models", v1.ModelsListApi.as_view(), name="v1-models"),
    path("v1/models/<str:name>", v1.ModelDetailApi.as_view(), name="v1-model"),
    path("v1/models/<str:name>/predict", v1.ModelPredictApi.as_view(), name="v1-predict"),
    path("v1/jobs", jobs.JobsApi.as_view(), name="v1-jobs"),
    path("v1/jobs/<str:job_id>", jobs.JobDetailApi.as_view(), name="v1-job"),
    path("v1/jobs/<str:job_id>/results", jobs.JobResultsApi.as_view(), name="v1-job-results"),
    path("v1/webhooks", webhooks.WebhooksApi.as_view(), name="v1-webhooks"),
    path("v1/webhooks/<str:webhook_id>", webhooks.WebhookDetailApi.as_view(), name="v1-webhook"),
    path(
        "v1/webhooks/<str:webhook_id>/deliveries", webhooks.WebhookDeliveriesApi.as_view(), name="v1-webhook-deliveries"
    ),
    path("v1/usage", tenants.UsageGetApi.as_view(), name="usage"),
    path("v1/keys", tenants.ApiKeyListApi.as_view(), name="api-keys"),
    path("v1/keys/<str:prefix>", tenants.ApiKeyGetApi.as_view(), name="api-key-detail"),
    # Receipts are tenant-scoped (any key of the tenant; another tenant's request is a 404).
    path("v1/audit/receipts/<str:request_id>", receipts.AuditReceiptApi.as_view(), name="audit-receipt"),
    path("v2", v2.server_metadata, name="v2-server"),
    path("v2/health/live", v2.health_live, name="v2-live"),
    path("v2/health/ready", v2.health_ready, name="v2-ready"),
    path("v2/models/<str:name>", v2.model_metadata, name="v2-model"),
    path("v2/models/<str:name>/versions/<str:version>", v2.model_metadata, name="v2-model-version"),
    path("v2/models/<str:name>/ready", v2.model_ready, name="v2-model-ready"),
    path("v2/models/<str:name>/versions/<str:version>/ready", v2.model_ready, name="v2-model-version-ready"),
    path("v2/models/<str:name>/infer", v2.model_infer, name="v2-infer"),
    path("v2/models/<str:name>/versions/<str:version>/infer", v2.model_infer, name="v2-infer-version"),
]
