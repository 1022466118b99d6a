"""``TenantScopedApi``: subclasses cannot bypass the scoping, and scoped() filters by the caller's tenant."""

from __future__ import annotations

import pytest
from django.urls import path
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory

from audit.models import AuditEvent
from audit.services import audit_event_record
from core.errors import Forbidden, NotFound
from tenants.authentication import HasScope
from tenants.models import ApiKey
from tenants.scoping import TenantScopedApi
from tests.support import assert_problem
from tests.tenants.conftest import issue_key
from tests.tenants.factories import PlanFactory, TenantFactory


@pytest.mark.parametrize("hook", ["scoped", "get_object_or_404", "initial", "dispatch", "finalize_response"])
def test_scoping_hooks_cannot_be_overridden(hook):
    with pytest.raises(TypeError, match=hook):
        type("Sneaky", (TenantScopedApi,), {hook: lambda self, *a, **k: None})


def test_authentication_cannot_be_dropped():
    with pytest.raises(TypeError, match="ApiKeyAuthentication"):
        type("Open", (TenantScopedApi,), {"authentication_classes": []})


def test_tenant_field_must_name_a_tenant():
    with pytest.raises(TypeError, match="tenant_field"):
        type("Odd", (TenantScopedApi,), {"tenant_field": "owner_id"})
    related = type("ViaRelation", (TenantScopedApi,), {"tenant_field": "job__tenant_id"})
    assert related.tenant_field == "job__tenant_id"


def test_not_found_error_must_be_a_404():
    with pytest.raises(TypeError, match="not_found_error"):
        type("Leaky", (TenantScopedApi,), {"not_found_error": Forbidden})


class KeyNotFound(NotFound):
    code = "key_not_found"


class _KeyApi(TenantScopedApi):
    """A tenant-owned endpoint over ``ApiKey``, addressed through its ``tenant`` relation."""

    tenant_field = "tenant"
    permission_classes = [HasScope("keys:read")]
    not_found_error = KeyNotFound

    def get(self, request, prefix):
        return Response(
            {
                "ids": sorted(self.scoped(ApiKey.objects.all()).values_list("id", flat=True)),
                "found": self.get_object_or_404(ApiKey.objects.all(), prefix=prefix).prefix,
            }
        )


class _AuditBySlugApi(TenantScopedApi):
    """A tenant-owned endpoint over rows that name their tenant by slug."""

    tenant_field = "tenant_slug"

    def get(self, request):
        return Response({"n": self.scoped(AuditEvent.objects.filter(action="probe")).count()})


class _RecordingApi(TenantScopedApi):
    """Records every handler call: authentication must refuse before the handler runs."""

    calls: list[int] = []

    def get(self, request):
        self.calls.append(1)
        return Response({})


# Served through the test client (``pytest.mark.urls``) so that error answers pass the whole
# middleware stack and carry a request id, as ``assert_problem`` requires of every problem.
urlpatterns = [
    path("scoping/keys/<str:prefix>", _KeyApi.as_view()),
    path("scoping/recording", _RecordingApi.as_view()),
]


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.urls(__name__)
def test_scoped_filters_by_the_callers_tenant_and_404s_other_tenants(client):
    mine, theirs = TenantFactory(plan=PlanFactory()), TenantFactory(plan=PlanFactory())
    key, own_second, foreign = issue_key(mine), issue_key(mine), issue_key(theirs)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key.raw_key}"}

    response = client.get(f"/scoping/keys/{own_second.key.prefix}", **auth)
    assert response.status_code == 200
    assert response.json() == {"ids": sorted([key.key.pk, own_second.key.pk]), "found": own_second.key.prefix}

    response = client.get(f"/scoping/keys/{foreign.key.prefix}", **auth)
    assert_problem(response, 404, "key_not_found")
    assert foreign.key.prefix not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.embedded
def test_scoped_by_slug():
    mine, theirs = TenantFactory(plan=PlanFactory()), TenantFactory(plan=PlanFactory())
    for tenant in (mine, theirs, theirs):
        audit_event_record(event_type="request", action="probe", tenant_slug=tenant.slug, tenant_id=tenant.pk)
    key = issue_key(mine)
    response = _AuditBySlugApi.as_view()(APIRequestFactory().get("/y", HTTP_X_API_KEY=key.raw_key))
    assert response.data == {"n": 1}


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.urls(__name__)
def test_handler_never_runs_without_a_principal(client, monkeypatch):
    monkeypatch.setattr(_RecordingApi, "calls", [])
    response = client.get("/scoping/recording")
    assert_problem(response, 401, "missing_api_key")
    assert _RecordingApi.calls == []
