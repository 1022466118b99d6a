"""The one base class of every authenticated REST endpoint: ``GovernedApi``.

Every endpoint that answers a tenant's API key -- predictions, model
listings, jobs, usage, the caller's keys, audit receipts -- is a subclass.
The base runs the governed pipeline's fixed steps around the handler, so no
endpoint writes them and none can forget one:

* **authentication and scope** before the handler runs (``initial``): the
  key, the tenant, the class's ``scope``; 401/403 otherwise;
* **one audit record per request**, through the pipeline's single writer
  (:class:`gateway.pipeline.GovernedCall`): a handler's exception is
  recorded with its status and code (``handle_exception``), a success with
  the answer's status (``finalize_response``); a record that cannot be
  written turns the answer into 503 -- nothing is answered unrecorded;
* **tenant scoping** of the objects a handler reaches: ``scoped(queryset)``
  filters by the caller's tenant, and ``get_object_or_404`` answers 404 --
  never 403, never the object -- for another tenant's object, exactly as for
  one that does not exist (OWASP API1), so ids cannot be probed either;
* **validated input**: ``validated(serializer, data)`` runs the serializer
  that documents the input (the OpenAPI request schema) and answers
  ``invalid_input`` with every problem it found.

A handler uses ``self.call`` for the pipeline's model steps (resolve,
decide, reserve, validate, infer).  The hooks above are sealed:
``__init_subclass__`` refuses a subclass that overrides them, or that
forgets its ``scope``/``endpoint``, at import time -- in every test run, not
in production.  (PostHog's ``TeamAndOrgViewSetMixin`` and NetBox's
``BaseViewSet.initial`` follow the same idea.)

The Open Inference Protocol views (``gateway.api.v2``) drive the same
``GovernedCall`` from function views, because that protocol defines its own
error body; the governance steps and the audit writer are the same ones.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar, final

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from audit.errors import AuditUnavailable
from core.errors import DomainError, InvalidInput, MissingApiKey, NotFound, exception_to_response
from gateway.api.negotiation import JsonOnlyNegotiation
from gateway.api.params import params_validated
from gateway.pipeline import GovernedCall
from tenants.principal import Principal

M = TypeVar("M", bound=Model)

_SEALED = (
    "dispatch",
    "initial",
    "handle_exception",
    "finalize_response",
    "principal",
    "scoped",
    "get_object_or_404",
    "validated",
)
_TENANT_FIELD_ENDINGS = ("tenant_id", "tenant", "tenant_slug")


class GovernedApi(APIView):
    """Base class of every API-key endpoint (see the module docstring)."""

    #: The scope the calling key must hold (``tenants.principal.SCOPE_*``); ``None``, stated, for
    #: endpoints any key of the tenant may call (the receipts of its own requests).
    scope: ClassVar[str | None] = ""
    #: The audit ``action`` of every request to this endpoint (``models.predict``, ``usage.read``...),
    #: or one per handler (``{"get": "jobs.list", "post": "jobs.submit"}``; the first names the others).
    endpoint: ClassVar[str | dict[str, str]] = ""
    #: The lookup that names the owning tenant: ``tenant_id``/``tenant`` (id) or ``tenant_slug`` (slug).
    tenant_field: ClassVar[str] = "tenant_id"
    #: 404 error raised for a missing or foreign object (a ``NotFound`` subclass, e.g. ``JobNotFound``).
    not_found_error: ClassVar[type[NotFound]] = NotFound

    # The pipeline authenticates (per-process key cache, failed-auth throttle, 401s audited);
    # DRF's own authentication and permission hooks would run a second, unaudited check.
    authentication_classes: ClassVar[list] = []
    permission_classes: ClassVar[list] = []
    # Bodies are read by the pipeline within the plan's size limit, never by a DRF parser first.
    parser_classes: ClassVar[list] = []
    content_negotiation_class = JsonOnlyNegotiation

    call: GovernedCall

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        overridden = [name for name in _SEALED if name in cls.__dict__]
        if overridden:
            raise TypeError(f"{cls.__name__} may not override {', '.join(overridden)}: governance lives there.")
        if cls.authentication_classes or cls.permission_classes:
            raise TypeError(f"{cls.__name__} must leave authentication to the governed pipeline.")
        if cls.tenant_field.split("__")[-1] not in _TENANT_FIELD_ENDINGS:
            raise TypeError(f"{cls.__name__}.tenant_field must end in tenant_id, tenant or tenant_slug.")
        if not issubclass(cls.not_found_error, NotFound):
            raise TypeError(f"{cls.__name__}.not_found_error must be a NotFound subclass.")
        handles = any(method in cls.__dict__ for method in ("get", "post", "put", "patch", "delete"))
        if handles and not ((cls.scope or cls.scope is None) and cls.endpoint):
            raise TypeError(f"{cls.__name__} must name its scope and its audit endpoint.")

    @final
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        """Open this request's governed call (its clock starts here), then DRF's dispatch."""
        endpoint = self.endpoint
        if isinstance(endpoint, dict):
            endpoint = endpoint.get((request.method or "").lower()) or next(iter(endpoint.values()))
        self.call = GovernedCall(request, scope=self.scope, endpoint=endpoint)
        return super().dispatch(request, *args, **kwargs)

    @final
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """DRF's checks, then the key, the tenant and the scope: no handler runs without them."""
        super().initial(request, *args, **kwargs)
        self.call.authenticate()

    @final
    def handle_exception(self, exc: Exception) -> Any:
        """Record the refusal or failure (once), then answer it as a problem document."""
        outcome = self.call.fail(exc)
        return super().handle_exception(outcome)  # type: ignore[arg-type]

    @final
    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        """Record a success before it is answered, and add the pipeline's headers (RateLimit-*, decision)."""
        response = super().finalize_response(request, response, *args, **kwargs)
        call = self.call
        if not call.audited and call.principal is not None and response.status_code < 400:
            try:
                headers = call.record_success(status=response.status_code)
            except AuditUnavailable as exc:
                return exception_to_response(exc)
            for name, value in headers.items():
                if name not in response:
                    response[name] = value
        return response

    @final
    @property
    def principal(self) -> Principal:
        """The authenticated caller (available in handlers)."""
        principal = self.call.principal
        if principal is None:
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
    def validated(
        self, serializer_class: type[serializers.Serializer], data: Any, *, error: type[DomainError] = InvalidInput
    ) -> dict[str, Any]:
        """``data`` checked by the serializer that documents it; 400 listing every problem (``params_validated``)."""
        return params_validated(serializer_class, data, error=error)
