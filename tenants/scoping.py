"""Tenant scoping in one place: the base class of every tenant-owned API.

OWASP API1 (broken object-level authorization) is the most common API flaw:
an endpoint that fetches ``Job.objects.get(id=...)`` and forgets to check the
owner.  Here no endpoint writes that check itself.  ``TenantScopedApi``

* always authenticates with ``ApiKeyAuthentication`` and refuses to run a
  handler without a ``Principal`` (``initial`` is final);
* offers ``scoped(queryset)``, which filters by the caller's tenant, and
  ``get_object_or_404(queryset, **lookup)``, which fetches through
  ``scoped`` and answers 404 -- never 403, never the object -- for another
  tenant's object, exactly as for one that does not exist (so ids cannot be
  probed either);
* refuses, at class-creation time, subclasses that override those hooks or
  drop the authentication class (``__init_subclass__`` raises ``TypeError``:
  the mistake fails at import, in every test run, not in production).

Subclasses set ``tenant_field`` when their model names its tenant otherwise
(``tenant_slug``, ``job__tenant_id``...), and may set ``audit_action`` to
have every answer to an authenticated caller recorded as a ``request`` audit
event (status, error code, latency), which ``/v1/usage`` and ``/v1/keys`` do.
(PostHog's ``TeamAndOrgViewSetMixin`` and NetBox's ``BaseViewSet.initial``
follow the same idea.)
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, TypeVar, final

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Model, QuerySet
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.errors import AuditUnavailable
from core.errors import MissingApiKey, NotFound, exception_to_response
from core.logging import current_request_id
from core.sanitize import text_for_record
from tenants.authentication import ApiKeyAuthentication, principal_of
from tenants.principal import Principal

M = TypeVar("M", bound=Model)

_SEALED = ("dispatch", "initial", "scoped", "get_object_or_404", "finalize_response", "principal")


class TenantScopedApi(APIView):
    """Base class of every API that serves a tenant's objects (see the module docstring)."""

    authentication_classes: ClassVar[list] = [ApiKeyAuthentication]
    permission_classes: ClassVar[list] = []
    #: The lookup that names the owning tenant: ``tenant_id``/``tenant`` (id) or ``tenant_slug`` (slug).
    tenant_field: ClassVar[str] = "tenant_id"
    #: 404 error raised for a missing or foreign object (a ``NotFound`` subclass, e.g. ``JobNotFound``).
    not_found_error: ClassVar[type[NotFound]] = NotFound
    #: When set, every answer to an authenticated caller is recorded as a ``request`` audit event.
    audit_action: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        overridden = [name for name in _SEALED if name in cls.__dict__]
        if overridden:
            raise TypeError(f"{cls.__name__} may not override {', '.join(overridden)}: tenant scoping lives there.")
        if not any(isinstance(c, type) and issubclass(c, ApiKeyAuthentication) for c in cls.authentication_classes):
            raise TypeError(f"{cls.__name__} must authenticate with ApiKeyAuthentication.")
        if cls.tenant_field.split("__")[-1] not in ("tenant_id", "tenant", "tenant_slug"):
            raise TypeError(f"{cls.__name__}.tenant_field must end in tenant_id, tenant or tenant_slug.")
        if not issubclass(cls.not_found_error, NotFound):
            raise TypeError(f"{cls.__name__}.not_found_error must be a NotFound subclass.")

    @final
    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        """Stamp the start time (audit latency), then DRF's dispatch."""
        self._started = time.perf_counter()
        return super().dispatch(request, *args, **kwargs)

    @final
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """DRF's checks, then insist on a ``Principal``: no handler runs without a tenant."""
        super().initial(request, *args, **kwargs)
        if not isinstance(request.auth, Principal):
            raise MissingApiKey("This endpoint needs an API key.")

    @final
    @property
    def principal(self) -> Principal:
        """The authenticated caller (available in handlers)."""
        principal = self.request.auth
        if not isinstance(principal, Principal):
            raise MissingApiKey("This endpoint needs an API key.")
        return principal

    @final
    def scoped(self, queryset: QuerySet[M]) -> QuerySet[M]:
        """``queryset`` restricted to the caller's tenant: the only way handlers should reach rows."""
        principal = self.principal
        field = self.tenant_field
        value: int | str = principal.tenant_slug if field.endswith("tenant_slug") else principal.tenant_id
        if field.endswith("__tenant") or field == "tenant":
            field += "_id"
        return queryset.filter(**{field: value})

    @final
    def get_object_or_404(self, queryset: QuerySet[M], **lookup: Any) -> M:
        """One of the caller's objects, or ``not_found_error`` (404) -- also for another tenant's object."""
        try:
            return self.scoped(queryset).get(**lookup)
        except (ObjectDoesNotExist, ValidationError, ValueError, TypeError):
            # A malformed id is "not found" too: the answer must not depend on whether the id exists.
            raise self.not_found_error(f"No such {queryset.model._meta.verbose_name}.") from None

    @final
    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Any:
        """DRF's finalisation, then the optional audit record (a failed INSERT turns the answer into 503)."""
        response = super().finalize_response(request, response, *args, **kwargs)
        if self.audit_action:
            principal = principal_of(request)
            if principal is not None:
                try:
                    self._audit_request(request, response, principal)
                except AuditUnavailable as exc:
                    return exception_to_response(exc)
        return response

    def _audit_request(self, request: Request, response: Any, principal: Principal) -> None:
        # The same request-event writer as the governed pipeline (gateway.pipeline.GovernedCall).
        from audit.services import audit_request_record

        error_code = ""
        if response.status_code >= 400:
            data = getattr(response, "data", None)
            error_code = str(data.get("code", "")) if isinstance(data, dict) else _problem_code(response)
        started = getattr(self, "_started", None)
        audit_request_record(
            action=self.audit_action or "",
            request_id=getattr(request._request, "request_id", "") or current_request_id(),
            actor=principal.actor,
            tenant_id=principal.tenant_id,
            tenant_slug=principal.tenant_slug,
            key_prefix=principal.key_prefix,
            region=principal.region,
            method=request.method or "",
            path=text_for_record(request.path, max_length=300),
            http_status=response.status_code,
            latency_ms=round((time.perf_counter() - started) * 1000.0, 3) if started else None,
            error_code=error_code,
        )


def _problem_code(response: Any) -> str:
    import json

    try:
        return str(json.loads(response.content).get("code", ""))
    except (ValueError, AttributeError):
        return ""
