"""URL wiring of the protocol surfaces: REST v1 models and jobs, and the Open Inference Protocol v2."""

from django.urls import path

from gateway.api import jobs, v1, v2

urlpatterns = [
    path("v1/models", v1.ModelsListApi.as_view(), name="v1-models"),
    path("v1/models/<str:name>", v1.ModelDetailApi.as_view(), name="v1-model"),
    path("v1/models/<str:name>/predict", v1.ModelPredictApi.as_view(), name="v1-predict"),
    path("v1/jobs", jobs.JobsApi.as_view(), name="v1-jobs"),
    path("v1/jobs/<str:job_id>", jobs.JobDetailApi.as_view(), name="v1-job"),
    path("v1/jobs/<str:job_id>/results", jobs.JobResultsApi.as_view(), name="v1-job-results"),
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
