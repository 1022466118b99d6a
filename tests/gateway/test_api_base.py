"""``GovernedApi``: subclasses cannot bypass authentication, scoping or the audit; scoped() filters by tenant."""

from __future__ import annotations

import pytest
from django.urls import path
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory

from audit.models import AuditEvent
from audit.services import audit_event_record
from core.errors import Forbidden, NotFound
from gateway.api.base import GovernedApi
from gateway.api.params import StrictCharField, StrictIntegerField, StrictSerializer
from tenants.models import ApiKey
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.fixtures.tenants import issue_key
from tests.support import assert_problem


@pytest.mark.parametrize(
    "hook",
    ["scoped", "get_object_or_404", "initial", "dispatch", "handle_exception", "finalize_response", "validated"],
)
def test_governance_hooks_cannot_be_overridden(hook):
    with pytest.raises(TypeError, match=hook):
        type("Sneaky", (GovernedApi,), {hook: lambda self, *a, **k: None})


def test_authentication_cannot_be_replaced():
    """DRF authenticators would run a second, unaudited check beside the pipeline's."""
    from rest_framework.authentication import SessionAuthentication

    with pytest.raises(TypeError, match="authentication"):
        type("Open", (GovernedApi,), {"authentication_classes": [SessionAuthentication]})


def test_a_handler_needs_a_scope_and_an_audit_endpoint():
    handler = {"get": lambda self, request: Response({})}
    with pytest.raises(TypeError, match="scope"):
        type("Unnamed", (GovernedApi,), handler)
    with pytest.raises(TypeError, match="scope"):
        type("Unaudited", (GovernedApi,), {**handler, "scope": "predict"})
    any_key = type("AnyKey", (GovernedApi,), {**handler, "scope": None, "endpoint": "probe"})
    assert any_key.scope is None


def test_tenant_field_must_name_a_tenant():
    with pytest.raises(TypeError, match="tenant_field"):
        type("Odd", (GovernedApi,), {"tenant_field": "owner_id"})
    related = type("ViaRelation", (GovernedApi,), {"tenant_field": "job__tenant_id"})
    assert related.tenant_field == "job__tenant_id"


def test_not_found_error_must_be_a_404():
    with pytest.raises(TypeError, match="not_found_error"):
        type("Leaky", (GovernedApi,), {"not_found_error": Forbidden})


class KeyNotFound(NotFound):
    code = "key_not_found"


class _KeyApi(GovernedApi):
    """A tenant-owned endpoint over ``ApiKey``, addressed through its ``tenant`` relation."""

    scope = "keys:read"
    endpoint = "probe.keys"
    tenant_field = "tenant"
    not_found_error = KeyNotFound

    def get(self, request, prefix):
        return Response(
            {
                "ids": sorted(self.scoped(ApiKey.objects.all()).values_list("id", flat=True)),
                "found": self.get_object_or_404(ApiKey.objects.all(), prefix=prefix).prefix,
            }
        )


class _AuditBySlugApi(GovernedApi):
    """A tenant-owned endpoint over rows that name their tenant by slug."""

    scope = None
    endpoint = "probe.slug"
    tenant_field = "tenant_slug"

    def get(self, request):
        return Response({"n": self.scoped(AuditEvent.objects.filter(action="probe")).count()})


class _RecordingApi(GovernedApi):
    """Records every handler call: authentication must refuse before the handler runs."""

    scope = "keys:read"
    endpoint = "probe.recording"
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


class _OutcomesApi(GovernedApi):
    """One handler per outcome the base must record: success, refusal, failure, validated input."""

    scope = "keys:read"
    endpoint = {"get": "probe.outcome", "post": "probe.validated"}

    class InputSerializer(StrictSerializer):
        count = StrictIntegerField(min_value=1, max_value=5)
        label = StrictCharField(required=False)

        class Meta:
            reject_unknown_fields = True

    def get(self, request, outcome):
        if outcome == "refused":
            raise Forbidden("not today")
        if outcome == "broken":
            raise RuntimeError("a bug")
        return Response({"ok": True}, status=201 if outcome == "created" else 200)

    def post(self, request, outcome):
        body = self.validated(self.InputSerializer, self.call.parse_body())
        return Response(body)


urlpatterns += [path("governed/<str:outcome>", _OutcomesApi.as_view())]


def _events(action):
    return list(AuditEvent.objects.filter(event_type="request", action=action).order_by("seq"))


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.urls(__name__)
@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [("ok", 200, ""), ("created", 201, ""), ("refused", 403, "forbidden"), ("broken", 500, "internal_error")],
)
def test_every_outcome_is_audited_exactly_once_with_its_status(client, outcome, status, code):
    key = issue_key(TenantFactory(plan=PlanFactory()))
    response = client.get(f"/governed/{outcome}", HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    assert response.status_code == status
    if status >= 400:
        assert_problem(response, status, code)
    (event,) = _events("probe.outcome")
    assert (event.http_status, event.error_code, event.key_prefix) == (status, code, key.key.prefix)
    assert event.request_id == response["X-Request-ID"]


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.urls(__name__)
def test_a_refused_key_is_audited_and_the_handler_never_runs(client, monkeypatch):
    monkeypatch.setattr(_RecordingApi, "calls", [])
    tenant = TenantFactory(plan=PlanFactory())
    no_scope = issue_key(tenant, scopes=["predict"])
    response = client.get("/scoping/recording", HTTP_AUTHORIZATION=f"Bearer {no_scope.raw_key}")
    assert_problem(response, 403, "insufficient_scope")
    assert _RecordingApi.calls == []
    (event,) = _events("probe.recording")
    assert (event.http_status, event.error_code) == (403, "insufficient_scope")


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.urls(__name__)
def test_a_success_that_cannot_be_audited_is_answered_503_not_served(client, monkeypatch):
    from audit.errors import AuditUnavailable
    from gateway import pipeline

    key = issue_key(TenantFactory(plan=PlanFactory()))

    def unavailable(**fields):
        raise AuditUnavailable("the audit database is down")

    monkeypatch.setattr(pipeline, "audit_request_record", unavailable)
    response = client.get("/governed/ok", HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    assert_problem(response, 503, AuditUnavailable.code)
    assert b'"ok"' not in response.content


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.urls(__name__)
@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b'{"count": 2, "label": " a "}', 200, "", None),
        (b'{"count": "2"}', 400, "invalid_input", "count"),  # DRF alone would take the string
        (b'{"count": true}', 400, "invalid_input", "count"),
        (b'{"count": 2.0}', 400, "invalid_input", "count"),
        (b'{"count": 9}', 400, "invalid_input", "count"),
        (b'{"count": 2, "label": 5}', 400, "invalid_input", "label"),  # DRF alone would answer "5"
        (b'{"count": 2, "colour": "red"}', 400, "invalid_input", "colour"),
        (b'{"label": "x"}', 400, "invalid_input", "count"),
        (b"[1, 2]", 400, "malformed_request", None),
    ],
)
def test_input_is_validated_by_the_serializer_that_documents_it(client, body, status, code, field):
    key = issue_key(TenantFactory(plan=PlanFactory()))
    response = client.post(
        "/governed/x", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key.raw_key}"
    )
    if status == 200:
        assert response.status_code == 200
        assert response.json() == {"count": 2, "label": " a "}  # kept as sent, not trimmed
    else:
        problem = assert_problem(response, status, code)
        if field:
            assert field in problem["errors"]
            assert field in problem["detail"]
    (event,) = _events("probe.validated")
    assert event.http_status == status
