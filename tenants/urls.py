"""HTTP routes of this app (mounted at the root by gateway.urls)."""

from django.urls import path

from tenants.apis import ApiKeyGetApi, ApiKeyListApi, UsageGetApi

urlpatterns = [
    path("v1/usage", UsageGetApi.as_view(), name="usage"),
    path("v1/keys", ApiKeyListApi.as_view(), name="api-keys"),
    path("v1/keys/<str:prefix>", ApiKeyGetApi.as_view(), name="api-key-detail"),
]
