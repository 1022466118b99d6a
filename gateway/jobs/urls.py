"""Routes of the batch-job API."""

from django.urls import path

from gateway.jobs import apis

urlpatterns = [
    path("v1/jobs", apis.JobsApi.as_view(), name="v1-jobs"),
    path("v1/jobs/<str:job_id>", apis.JobDetailApi.as_view(), name="v1-job"),
    path("v1/jobs/<str:job_id>/results", apis.JobResultsApi.as_view(), name="v1-job-results"),
]
