"""Django admin for the people who configure tenants, keys and quotas.

Every save goes through ``tenants.services`` with the actor
``staff:<username>``, so admin changes are validated, invalidate the key
caches of every gateway process and are audited with before/after values
exactly like command-line changes.

A new key's secret is shown once, POST-redirect-GET: the POST that issues
the key parks the secret in the shared cache under a random token bound to
the user (five minutes at most) and redirects; the first GET of that page
pops it, so a reload or the back button shows "already shown" and never
issues another key.  Revoke and rotate live on the key's own page behind a
confirmation with a required reason (and the grace period, for rotation).
Tenants and keys are never deleted here: audit records refer to them;
suspend a tenant or revoke a key instead.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.safestring import mark_safe

from core.admin_confirm import ReasonForm
from core.errors import DomainError
from tenants.charts import Series, quota_bar_svg, usage_chart_svg
from tenants.models import ApiKey, Plan, Tenant
from tenants.principal import ALL_SCOPES, LIMIT_FIELDS
from tenants.selectors import (
    api_key_status,
    key_quota_scope,
    quota_usage_current,
    tenant_limits,
    tenant_quota_scope,
    usage_summary,
)
from tenants.services import (
    IssuedApiKey,
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    api_key_update,
    plan_delete,
    plan_save,
    tenant_save,
    tenant_suspend,
    tenant_unsuspend,
    tenant_validate,
)
from tenants.services.keys import models_validate

CHART_DAYS = 30
_ISSUED_ATTRIBUTE = "_maas_issued_keys"
_ISSUED_CACHE = "admin-issued-key:{token}"
# How long an unopened secret may wait in the cache, and how long "already shown" is remembered.
ISSUED_SECRET_SECONDS = 300
ISSUED_SHOWN_SECONDS = 24 * 3600


def staff_actor(request: HttpRequest) -> str:
    """How audit records name an admin user."""
    return f"staff:{request.user.get_username()}"


def _count(value: int | None) -> str:
    """A limit with thousands separators; empty means unlimited."""
    return "unlimited" if value is None else f"{value:,}"


# --- plans -------------------------------------------------------------------------------
@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    """Plans are edited here; every tenant on a plan sees its new limits within a second."""

    list_display = (
        "name",
        "rate_per_second",
        "burst_display",
        "daily_display",
        "monthly_display",
        "max_batch_display",
        "max_concurrent_jobs",
        "tenant_count",
        "updated_at",
    )
    search_fields = ("name", "description")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "description")}),
        (
            "Rate and quotas (empty = unlimited)",
            {"fields": ("rate_per_second", "burst", "daily_instances", "monthly_instances")},
        ),
        ("Request limits", {"fields": ("max_batch", "max_body_bytes", "max_concurrent_jobs", "max_job_instances")}),
        ("Timestamps", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Plan]:
        return super().get_queryset(request).annotate(_tenants=Count("tenants"))

    @admin.display(description="tenants", ordering="_tenants")
    def tenant_count(self, plan: Plan) -> str:
        return f"{getattr(plan, '_tenants', 0):,}"

    @admin.display(description="burst", ordering="burst")
    def burst_display(self, plan: Plan) -> str:
        return _count(plan.burst)

    @admin.display(description="daily instances", ordering="daily_instances")
    def daily_display(self, plan: Plan) -> str:
        return _count(plan.daily_instances)

    @admin.display(description="monthly instances", ordering="monthly_instances")
    def monthly_display(self, plan: Plan) -> str:
        return _count(plan.monthly_instances)

    @admin.display(description="max batch", ordering="max_batch")
    def max_batch_display(self, plan: Plan) -> str:
        return _count(plan.max_batch)

    def save_model(self, request: HttpRequest, obj: Plan, form: Any, change: bool) -> None:
        plan_save(plan=obj, actor=staff_actor(request))

    def delete_model(self, request: HttpRequest, obj: Plan) -> None:
        plan_delete(plan=obj, actor=staff_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Plan]) -> None:
        for plan in queryset:
            plan_delete(plan=plan, actor=staff_actor(request))


# --- keys ----------------------------------------------------------------------------------
def registered_model_names() -> list[str]:
    """Names in the model registry, for the allow-list checkboxes."""
    model_version = apps.get_model("inference", "ModelVersion")
    return sorted(set(model_version.objects.values_list("name", flat=True)))


class ApiKeyForm(forms.ModelForm):
    """Scopes and the model allow-list as checkboxes; nothing is typed as JSON."""

    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in ALL_SCOPES],
        widget=forms.CheckboxSelectMultiple,
        initial=list(ALL_SCOPES),
        required=False,
    )
    allowed_models = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Model allow-list",
        help_text="Models this key may call; none ticked = any of the tenant's models.",
    )

    class Meta:
        model = ApiKey
        fields = ("tenant", "name", "scopes", "allowed_models", "expires_at", *LIMIT_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        current = list(self.instance.allowed_models or []) if self.instance.pk is not None else []
        names = sorted(set(registered_model_names()) | set(current))
        self.fields["allowed_models"].choices = [(name, name) for name in names]
        if self.instance.pk is not None:
            self.initial["allowed_models"] = current
            self.initial["scopes"] = list(self.instance.scopes or [])

    def clean_allowed_models(self) -> list[str]:
        try:
            return models_validate(list(self.cleaned_data.get("allowed_models") or []))
        except DomainError as exc:
            raise forms.ValidationError(exc.detail) from exc

    def clean_scopes(self) -> list[str]:
        scopes = list(self.cleaned_data.get("scopes") or [])
        if not scopes:
            raise forms.ValidationError("Grant at least one scope.")
        return scopes


class RevokeKeyForm(forms.Form):
    """Revocation: effective within seconds everywhere; the reason goes to the audit trail."""

    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), strip=True)


class RotateKeyForm(forms.Form):
    """Rotation: a successor now, the old key valid for the grace period; the reason is audited."""

    grace_hours = forms.FloatField(min_value=0, max_value=24 * 90, label="Grace period (hours)")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), strip=True)


def issued_stash(request: HttpRequest, issued: list[IssuedApiKey]) -> str:
    """Park fresh secrets for the one GET that shows them; returns the page's token."""
    token = secrets.token_urlsafe(24)
    cache.set(
        _ISSUED_CACHE.format(token=token),
        {"user": request.user.pk, "keys": [(item.key.pk, item.raw_key) for item in issued], "shown": False},
        ISSUED_SECRET_SECONDS,
    )
    return token


def issued_pop(request: HttpRequest, token: str) -> tuple[list[ApiKey], dict[int, str], bool]:
    """The keys of ``token`` and their secrets, the first time only; later calls get ``shown=True``."""
    name = _ISSUED_CACHE.format(token=token)
    entry = cache.get(name)
    if not entry or entry["user"] != request.user.pk:
        raise Http404("No such key page.")
    secrets_by_pk = {} if entry["shown"] else {pk: raw for pk, raw in entry["keys"] if raw}
    if not entry["shown"]:
        cache.set(name, {**entry, "keys": [(pk, None) for pk, _ in entry["keys"]], "shown": True}, ISSUED_SHOWN_SECONDS)
    keys = list(ApiKey.objects.select_related("tenant", "rotated_from").filter(pk__in=[pk for pk, _ in entry["keys"]]))
    return keys, secrets_by_pk, bool(entry["shown"])


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys: create (the secret is shown once), edit scopes/models/limits, revoke and rotate."""

    form = ApiKeyForm
    list_display = ("prefix", "tenant", "name", "status", "scope_list", "expires_at", "last_used_at", "created_at")
    list_filter = ("revoked", "tenant__status", "tenant__region", "created_at")
    search_fields = ("prefix", "name", "tenant__slug", "tenant__name")
    list_select_related = ("tenant",)
    # Revoke and rotate are on each key's own page, behind a confirmation with a reason.
    actions = None
    change_form_template = "admin/tenants/apikey/change_form.html"
    readonly_fields = (
        "prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked",
        "revoked_reason",
        "revoked_at",
        "rotated_from",
        "grace_until",
        "lineage_id",
    )

    def get_fieldsets(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        main = ("tenant", "name", "scopes", "allowed_models", "expires_at")
        limits = ("Limit overrides (empty = inherit from the tenant)", {"fields": LIMIT_FIELDS})
        if obj is None:
            return ((None, {"fields": main}), limits)
        # The Status section shows exactly the read-only fields: one tuple, so the two cannot drift apart.
        status = ("Status", {"fields": self.readonly_fields})
        return ((None, {"fields": main}), limits, status)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ()
        return (*self.readonly_fields, "tenant")

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    @admin.display(description="status")
    def status(self, key: ApiKey) -> str:
        return api_key_status(key=key)

    @admin.display(description="scopes")
    def scope_list(self, key: ApiKey) -> str:
        return ", ".join(key.scopes or [])

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        actor = staff_actor(request)
        data = form.cleaned_data
        if not change:
            issued = api_key_create(
                tenant=data["tenant"],
                actor=actor,
                name=data["name"],
                scopes=data["scopes"],
                allowed_models=data["allowed_models"],
                expires_at=data.get("expires_at"),
                overrides={name: data.get(name) for name in LIMIT_FIELDS},
            )
            for field in ApiKey._meta.concrete_fields:
                setattr(obj, field.attname, getattr(issued.key, field.attname))
            obj._state.adding = False
            setattr(request, _ISSUED_ATTRIBUTE, [issued])
            return
        changes = {name: data[name] for name in form.changed_data if name in data and name != "tenant"}
        if changes:
            updated = api_key_update(key=obj, actor=actor, **changes)
            for field in ApiKey._meta.concrete_fields:
                setattr(obj, field.attname, getattr(updated, field.attname))

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        issued = getattr(request, _ISSUED_ATTRIBUTE, None)
        if issued:
            return self._issued_redirect(request, issued)
        return super().response_add(request, obj, post_url_continue)

    def _issued_redirect(self, request: HttpRequest, issued: list[IssuedApiKey]) -> HttpResponse:
        token = issued_stash(request, issued)
        return HttpResponseRedirect(reverse("admin:tenants_apikey_issued", args=[token]))

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("issued/<str:token>/", wrap(self.issued_view), name="tenants_apikey_issued"),
            path("<path:object_id>/revoke/", wrap(self.revoke_view), name="tenants_apikey_revoke"),
            path("<path:object_id>/rotate/", wrap(self.rotate_view), name="tenants_apikey_rotate"),
            *super().get_urls(),
        ]

    def issued_view(self, request: HttpRequest, token: str) -> HttpResponse:
        """Shows new secrets exactly once; a reload or the back button finds them already shown."""
        keys, secrets_by_pk, shown = issued_pop(request, token)
        response = TemplateResponse(
            request,
            "admin/tenants/apikey/issued.html",
            {
                **self.admin_site.each_context(request),
                "title": "API key issued" if len(keys) == 1 else "API keys issued",
                "issued": [{"key": key, "raw_key": secrets_by_pk.get(key.pk)} for key in keys],
                "already_shown": shown,
                "opts": self.model._meta,
            },
        )
        # The page holds a secret: no cache (and so no back-forward cache), no referrer leaks.
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response

    def _key_for_change(self, request: HttpRequest, object_id: str) -> ApiKey:
        key = get_object_or_404(ApiKey.objects.select_related("tenant"), pk=object_id)
        if not self.has_change_permission(request, key):
            raise PermissionDenied
        return key

    def _confirm_page(self, request: HttpRequest, key: ApiKey, form: forms.Form, *, verb: str, **extra: Any) -> Any:
        return TemplateResponse(
            request,
            "admin/tenants/apikey/confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{verb} key {key.prefix}?",
                "verb": verb,
                "key": key,
                "key_status": api_key_status(key=key),
                "form": form,
                "opts": self.model._meta,
                "original": key,
                **extra,
            },
        )

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm, with a reason, then revoke; every gateway process refuses the key within seconds."""
        key = self._key_for_change(request, object_id)
        form = RevokeKeyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            api_key_revoke(key=key, reason=form.cleaned_data["reason"], actor=staff_actor(request))
            self.message_user(request, f"Key {key.prefix} revoked; every gateway process refuses it within seconds.")
            return HttpResponseRedirect(reverse("admin:tenants_apikey_change", args=[key.pk]))
        return self._confirm_page(request, key, form, verb="Revoke")

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm, with a reason and the grace period, then issue the successor (shown once)."""
        key = self._key_for_change(request, object_id)
        form = RotateKeyForm(request.POST or None, initial={"grace_hours": settings.API_KEY_ROTATION_GRACE_HOURS})
        if request.method == "POST" and form.is_valid():
            try:
                issued = api_key_rotate(
                    key=key,
                    actor=staff_actor(request),
                    grace_hours=form.cleaned_data["grace_hours"],
                    reason=form.cleaned_data["reason"],
                )
            except DomainError as exc:
                form.add_error(None, exc.detail)
            else:
                return self._issued_redirect(request, [issued])
        return self._confirm_page(request, key, form, verb="Rotate")

    @admin.display(description="allowed models")
    def model_list(self, key: ApiKey) -> str:
        return ", ".join(key.allowed_models or []) or "any"


class ApiKeyInline(admin.TabularInline):
    """The tenant's keys, read-only (create, revoke and rotate them on the key pages)."""

    model = ApiKey
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("prefix", "name", "key_status", "scope_list", "expires_at", "grace_until", "last_used_at", "created_at")
    readonly_fields = fields
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="status")
    def key_status(self, key: ApiKey) -> str:
        return api_key_status(key=key)

    @admin.display(description="scopes")
    def scope_list(self, key: ApiKey) -> str:
        return ", ".join(key.scopes or [])


# --- tenants --------------------------------------------------------------------------------
class TenantForm(forms.ModelForm):
    """Admin form; the services repeat these checks for every other writer."""

    class Meta:
        model = Tenant
        fields = (
            "slug",
            "name",
            "contact",
            "region",
            "plan",
            "status",
            "suspended_reason",
            "identity_verified",
            "approved_purposes",
            *LIMIT_FIELDS,
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("status") == Tenant.Status.SUSPENDED and not (data.get("suspended_reason") or "").strip():
            self.add_error("suspended_reason", "A suspension needs a reason.")
        purposes = data.get("approved_purposes")
        if purposes is not None and not isinstance(purposes, list):
            self.add_error("approved_purposes", 'A JSON list such as ["research", "evaluation"].')
        return data

    def _post_clean(self) -> None:
        super()._post_clean()
        if not self.errors:
            try:
                tenant_validate(tenant=self.instance)
            except DomainError as exc:
                self.add_error(None, exc.detail)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    """Tenants with their plan, overrides, keys, a 30-day usage chart and current quota consumption."""

    form = TenantForm
    list_display = ("slug", "name", "status", "region", "plan", "identity_verified", "created_at")
    list_filter = ("status", "region", "plan", "identity_verified")
    search_fields = ("slug", "name", "contact")
    list_select_related = ("plan",)
    inlines = (ApiKeyInline,)
    readonly_fields = ("verified_by", "verified_at", "created_at", "updated_at", "effective_limits")
    fieldsets = (
        (None, {"fields": ("slug", "name", "contact", "region", "plan")}),
        ("Status", {"fields": ("status", "suspended_reason")}),
        ("Identity and purposes", {"fields": ("identity_verified", "verified_by", "verified_at", "approved_purposes")}),
        ("Limit overrides (empty = the plan's value)", {"fields": (*LIMIT_FIELDS, "effective_limits")}),
        ("Timestamps", {"fields": ("created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None) -> Any:
        if obj is None:
            return self.readonly_fields
        return ("slug", *self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return False

    @admin.display(description="effective limits")
    def effective_limits(self, tenant: Tenant) -> str:
        if tenant.pk is None:
            return "-"
        limits = tenant_limits(tenant=tenant)
        return ", ".join(
            f"{name.replace('_', ' ')}: {'unlimited' if getattr(limits, name) is None else getattr(limits, name)}"
            for name in LIMIT_FIELDS
        )

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        tenant_save(tenant=obj, actor=staff_actor(request))

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("usage/", wrap(self.usage_view), name="tenants_usage"),
            path("<path:object_id>/usage/", wrap(self.usage_view), name="tenants_tenant_usage"),
            path("<path:object_id>/suspend/", wrap(self.suspend_view), name="tenants_tenant_suspend"),
            *super().get_urls(),
        ]

    def suspend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm, with a reason, then suspend (or lift the suspension of) the tenant; both are audited."""
        tenant = get_object_or_404(Tenant, pk=object_id)
        if not self.has_change_permission(request, tenant):
            raise PermissionDenied
        suspending = tenant.status != Tenant.Status.SUSPENDED
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            change = tenant_suspend if suspending else tenant_unsuspend
            change(tenant=tenant, reason=form.cleaned_data["reason"], actor=staff_actor(request))
            self.message_user(
                request,
                f"Tenant {tenant.slug} suspended; its keys are refused within seconds."
                if suspending
                else f"Suspension of {tenant.slug} lifted.",
            )
            return HttpResponseRedirect(reverse("admin:tenants_tenant_change", args=[tenant.pk]))
        live = tenant.api_keys.filter(revoked=False).count()
        verb = "Suspend" if suspending else "Lift the suspension of"
        return TemplateResponse(
            request,
            "admin/tenants/tenant/suspend.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{verb} {tenant.slug}?",
                "verb": verb,
                "tenant": tenant,
                "live_keys": live,
                "suspending": suspending,
                "form": form,
                "opts": self.model._meta,
            },
        )

    def usage_view(self, request: HttpRequest, object_id: str | None = None) -> HttpResponse:
        """Usage per key and per model over 7, 30 or 90 days, read-only, with a CSV download.

        Open to whoever may view tenants and to compliance officers (who may read
        the audit trail these figures are computed from).
        """
        if not (self.has_view_permission(request) or request.user.has_perm(USAGE_PERMISSION)):
            raise PermissionDenied
        tenants = list(Tenant.objects.order_by("slug").only("pk", "slug", "name"))
        chosen = object_id or request.GET.get("tenant", "")
        if chosen and not str(chosen).isdigit():
            raise Http404("No such tenant.")
        tenant = get_object_or_404(Tenant, pk=chosen) if chosen else (tenants[0] if tenants else None)
        days = int(request.GET.get("days", "30")) if request.GET.get("days", "30") in {"7", "30", "90"} else 30
        now = datetime.now(UTC)
        until = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        summary = usage_summary(tenant=tenant, since=until - timedelta(days=days), until=until) if tenant else None
        if tenant is not None and request.GET.get("format") == "csv":
            return usage_csv(tenant=tenant, summary=summary, days=days)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Usage of {tenant.slug}" if tenant else "Usage",
            "opts": self.model._meta,
            "tenant": tenant,
            "tenants": tenants,
            "days": days,
            "ranges": (7, 30, 90),
            "summary": summary,
            "can_edit": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/tenants/tenant/usage.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        tenant = self.get_object(request, object_id)
        if tenant is not None:
            context.update(tenant_usage_context(tenant))
        return super().change_view(request, object_id, form_url, extra_context=context)


USAGE_PERMISSION = "audit.view_auditevent"


def usage_csv(*, tenant: Tenant, summary: Any, days: int) -> HttpResponse:
    """The usage page as CSV: one row per key and per model version."""
    import csv

    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="usage-{tenant.slug}-{days}d.csv"'
    writer = csv.writer(response)
    writer.writerow(
        [
            "tenant",
            "since",
            "until",
            "kind",
            "label",
            "requests",
            "instances",
            "refusals",
            "errors",
            "avg_latency_ms",
            "max_latency_ms",
        ]
    )
    for kind, rows in (("key", summary.keys), ("model", summary.models)):
        for row in rows:
            writer.writerow(
                [
                    tenant.slug,
                    summary.since.isoformat(),
                    summary.until.isoformat(),
                    kind,
                    row.label,
                    row.requests,
                    row.instances,
                    row.refusals,
                    row.errors,
                    "" if row.avg_latency_ms is None else row.avg_latency_ms,
                    "" if row.max_latency_ms is None else row.max_latency_ms,
                ]
            )
    return response


def tenant_usage_context(tenant: Tenant, *, now: datetime | None = None) -> dict[str, Any]:
    """The chart and quota table of the tenant page."""
    now = now or datetime.now(UTC)
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    since = today - timedelta(days=CHART_DAYS - 1)
    summary = usage_summary(tenant=tenant, since=since, until=today + timedelta(days=1))
    days = [row.day for row in summary.days]
    chart = usage_chart_svg(
        days=days,
        series=[
            Series("Requests", "#1565c0", [row.requests for row in summary.days]),
            Series("Instances", "#2e7d32", [row.instances for row in summary.days]),
            Series("Refusals", "#c62828", [row.refusals for row in summary.days]),
        ],
        title=f"Usage of {tenant.slug}, last {CHART_DAYS} days",
    )
    scopes = [tenant_quota_scope(tenant=tenant)]
    labels = {scopes[0].counter_id: "tenant"}
    merged_for_keys = tenant_limits(tenant=tenant)
    for key in tenant.api_keys.filter(revoked=False):
        scope = key_quota_scope(key=key, merged=merged_for_keys)
        if scope is not None and scope.counter_id not in labels and (scope.daily_instances or scope.monthly_instances):
            scopes.append(scope)
            labels[scope.counter_id] = f"key {key.prefix}"
    rows = [
        {
            "label": labels[usage.counter_id],
            "usage": usage,
            "gauge": mark_safe(quota_bar_svg(fraction=usage.fraction)),  # noqa: S308 - built from numbers only
        }
        for usage in quota_usage_current(scopes=scopes, now=now)
    ]
    return {
        "usage_chart": mark_safe(chart),  # noqa: S308 - every text in it is escaped by usage_chart_svg
        "usage_summary": summary,
        "quota_rows": rows,
        "chart_days": CHART_DAYS,
    }
