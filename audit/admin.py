"""Django admin for the audit trail: read-only records, exports, retention and legal holds.

Nothing here can add, change or delete an audit event, sealed block or purge
tombstone (the permissions do not even exist).  Retention periods and legal
holds are written through their services, so every change is audited.  The
export form streams small ranges straight to the browser and hands large
ones to a Celery task whose progress and download links appear on the
export's page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from audit.apis import CONTENT_TYPES, actor_of
from audit.models import AuditEvent, AuditExport, LegalHold, PurgeTombstone, SealedBlock, TenantRetention
from audit.selectors import ExportFilters, audit_events_filtered, audit_export_manifest_get
from audit.services import (
    audit_event_record,
    audit_export_file,
    audit_export_request,
    audit_export_run,
    audit_export_stream,
    legal_hold_place,
    legal_hold_release,
    retention_set,
)
from audit.services.compliance import EXPORT_PERMISSION
from audit.services.export import FORMATS
from audit.services.oversight import (
    audit_event_block_get,
    audit_event_inclusion_proof,
    audit_verification_request,
    compliance_status_get,
)

VERIFY_PERMISSION = "audit.view_auditevent"


def export_direct_max_rows() -> int:
    """Exports up to this many rows download at once; larger ones run in the background."""
    return int(getattr(settings, "AUDIT_EXPORT_DIRECT_MAX_ROWS", 50_000))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by whoever holds the view permission; never addable, changeable or deletable."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _known(app_label: str, model: str, field: str, value: str) -> bool:
    from django.apps import apps

    return apps.get_model(app_label, model).objects.filter(**{field: value}).exists()


class AuditExportForm(forms.Form):
    """Filters and format of an export started from the admin (dates picked, names checked)."""

    format = forms.ChoiceField(choices=[(f, f.upper() if f == "csv" else "JSON Lines") for f in FORMATS])
    since = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="UTC. Inclusive: events at exactly this time are exported.",
    )
    until = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="UTC. Exclusive: events at exactly this time are not exported.",
    )
    tenant = forms.CharField(required=False, help_text="Tenant slug; must exist (or have existed in the trail).")
    model = forms.CharField(required=False, help_text="Model name; must be in the registry.")
    event_type = forms.ChoiceField(required=False, choices=[("", "any"), *AuditEvent.Type.choices])
    decision = forms.ChoiceField(required=False, choices=[("", "any"), ("allow", "allow"), ("deny", "deny")])
    background = forms.BooleanField(required=False, help_text="Run in the background even for a small range.")

    def clean_tenant(self) -> str:
        slug = (self.cleaned_data.get("tenant") or "").strip()
        if slug and not (
            _known("tenants", "Tenant", "slug", slug) or AuditEvent.objects.filter(tenant_slug=slug).exists()
        ):
            raise forms.ValidationError(f"No tenant {slug!r} exists or appears in the trail.")
        return slug

    def clean_model(self) -> str:
        name = (self.cleaned_data.get("model") or "").strip()
        if name and not (
            _known("inference", "ModelVersion", "name", name) or AuditEvent.objects.filter(model_name=name).exists()
        ):
            raise forms.ValidationError(f"No model {name!r} is in the registry or the trail.")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise forms.ValidationError("'since' must be earlier than 'until'.")
        return data

    def filters(self) -> ExportFilters:
        """The validated form as export filters."""
        data = self.cleaned_data
        return ExportFilters.from_mapping(
            {k: data.get(k) for k in ("since", "until", "tenant", "model", "event_type", "decision")}
        )


# The audit list's own filters, carried into the export form.
_LIST_TO_EXPORT = {"event_type__exact": "event_type", "decision__exact": "decision", "q": None}


def export_range_from_list(params: Any) -> dict[str, datetime]:
    """The audit list's date drill-down (``occurred_at__year/month/day``) as the export's [since, until).

    A year, a month or a day selected in the list becomes the same range in
    the form; values that are not a real date are ignored (the list ignores them too).
    """
    try:
        year = int(params.get("occurred_at__year", ""))
    except ValueError:
        return {}
    month_text, day_text = params.get("occurred_at__month", ""), params.get("occurred_at__day", "")
    try:
        if month_text and day_text:
            since = datetime(year, int(month_text), int(day_text), tzinfo=UTC)
            until = since + timedelta(days=1)
        elif month_text:
            month = int(month_text)
            since = datetime(year, month, 1, tzinfo=UTC)
            until = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        else:
            since, until = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    except (ValueError, OverflowError):
        return {}
    return {"since": since, "until": until}


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The trail itself, searchable, filterable and exportable."""

    list_display = (
        "seq",
        "occurred_at",
        "event_type",
        "action",
        "tenant_slug",
        "actor",
        "http_status",
        "decision",
        "model_name",
    )
    list_filter = ("event_type", "decision", "http_status", "needs_review")
    search_fields = ("request_id", "tenant_slug", "actor", "action", "model_name", "=event_id")
    date_hierarchy = "occurred_at"
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is not free
    ordering = ("-seq",)
    readonly_fields = ("sealed_in",)

    @admin.display(description="sealed in")
    def sealed_in(self, obj: AuditEvent) -> str:
        block = audit_event_block_get(seq=obj.seq)
        if block is None:
            return "not sealed yet (sealing runs every minute)"
        return format_html(
            '<a href="{}">block {}</a> (sealed {}) · <a href="{}" class="maas-proof">download inclusion proof</a>',
            reverse("admin:audit_sealedblock_change", args=[block.number]),
            block.number,
            block.sealed_at.strftime("%Y-%m-%d %H:%M:%S %Z"),
            reverse("admin:audit_auditevent_proof", args=[obj.seq]),
        )

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        custom = [
            path("export/", wrap(self.export_view), name="audit_auditevent_export"),
            path("compliance/", wrap(self.compliance_view), name="audit_compliance"),
            path("compliance/verify/", wrap(self.verify_now_view), name="audit_verify_now"),
            path("<int:seq>/proof/", wrap(self.proof_view), name="audit_auditevent_proof"),
        ]
        return custom + super().get_urls()

    def compliance_view(self, request: HttpRequest) -> HttpResponse:
        """The officers' dashboard: sealing, the unsealed backlog, the last verification and "Verify now"."""
        if not request.user.has_perm(VERIFY_PERMISSION):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Compliance status",
            "opts": self.model._meta,
            "status": compliance_status_get(),
            "can_export": request.user.has_perm(EXPORT_PERMISSION),
        }
        return TemplateResponse(request, "admin/audit/compliance.html", context)

    def verify_now_view(self, request: HttpRequest) -> HttpResponse:
        """POST: record the request and run the verification on a Celery worker (never in a web process)."""
        if request.method != "POST" or not request.user.has_perm(VERIFY_PERMISSION):
            raise PermissionDenied
        audit_verification_request(actor=actor_of(request.user))
        self.message_user(
            request, "Verification queued; a worker checks every sealed block. Reload for the result.", messages.INFO
        )
        return redirect(reverse("admin:audit_compliance"))

    def proof_view(self, request: HttpRequest, seq: int) -> HttpResponse:
        """The event's inclusion proof in its signed block, as a JSON download."""
        if not request.user.has_perm(VERIFY_PERMISSION):
            raise PermissionDenied
        proof = audit_event_inclusion_proof(seq=seq)
        response = JsonResponse(proof, json_dumps_params={"indent": 1})
        response["Content-Disposition"] = f'attachment; filename="audit-event-{seq}-inclusion-proof.json"'
        return response

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        extra = {**(extra_context or {}), "can_export": request.user.has_perm(EXPORT_PERMISSION)}
        return super().changelist_view(request, extra_context=extra)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The export form: small ranges download now, large ones become background exports."""
        if not request.user.has_perm(EXPORT_PERMISSION):
            raise PermissionDenied
        initial: dict[str, Any] = {
            field: request.GET[name] for name, field in _LIST_TO_EXPORT.items() if field and request.GET.get(name)
        }
        initial.update(export_range_from_list(request.GET))
        form = AuditExportForm(request.POST or None, initial=initial)
        limit = export_direct_max_rows()
        if request.method == "POST" and form.is_valid():
            filters = form.filters()
            fmt = form.cleaned_data["format"]
            actor = actor_of(request.user)
            estimate = audit_events_filtered(filters=filters).count()
            if request.POST.get("stream") and estimate <= limit and not form.cleaned_data.get("background"):
                export, chunks = audit_export_stream(filters=filters, format=fmt, actor=actor, source="admin")
                response = StreamingHttpResponse(chunks, content_type=CONTENT_TYPES[fmt])
                response["Content-Disposition"] = f'attachment; filename="audit-export-{export.pk}.{fmt}"'
                response["X-Audit-Export-Id"] = str(export.pk)
                return response
            export = audit_export_request(filters=filters, format=fmt, actor=actor)
            if estimate <= limit and not form.cleaned_data.get("background"):
                # Small enough to write now: the export's page then links the file and its manifest at once.
                export = audit_export_run(export_id=export.pk)
                self.message_user(
                    request, f"Export #{export.pk} is ready: {export.row_count:,} events.", messages.SUCCESS
                )
                return redirect(reverse("admin:audit_auditexport_change", args=[export.pk]))
            self.message_user(
                request,
                f"Export #{export.pk} of about {estimate} events started in the background; "
                "this page shows its progress and the download links when it is done.",
                messages.INFO,
            )
            return redirect(reverse("admin:audit_auditexport_change", args=[export.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Export audit events",
            "form": form,
            "opts": self.model._meta,
            "direct_limit": limit,
        }
        return TemplateResponse(request, "admin/audit/auditevent/export.html", context)


@admin.register(SealedBlock)
class SealedBlockAdmin(ReadOnlyAdmin):
    """Signed Merkle blocks (the tamper evidence)."""

    list_display = ("number", "first_seq", "last_seq", "count", "sealed_at", "merkle_root", "key_id")
    exclude = ("leaf_hashes", "event_ids")
    ordering = ("-number",)


@admin.register(PurgeTombstone)
class PurgeTombstoneAdmin(ReadOnlyAdmin):
    """Signed records of what the retention purge removed."""

    list_display = ("first_block", "last_block", "first_seq", "last_seq", "event_count", "purged_at", "reason")


@admin.register(AuditExport)
class AuditExportAdmin(ReadOnlyAdmin):
    """Exports with status, progress and download links."""

    list_display = ("id", "created_at", "requested_by", "source", "format", "status", "progress_text", "row_count")
    list_filter = ("status", "format", "source")
    readonly_fields = (
        "requested_by",
        "source",
        "format",
        "filters",
        "status",
        "progress_text",
        "row_count",
        "sha256",
        "downloads",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    )
    exclude = ("manifest", "file_path", "progress", "estimated_rows")

    @admin.display(description="progress")
    def progress_text(self, obj: AuditExport) -> str:
        if obj.status == AuditExport.Status.DONE:
            return f"done ({obj.row_count} rows)"
        if obj.status == AuditExport.Status.FAILED:
            return "failed"
        return f"{obj.progress * 100:.0f}% ({obj.row_count} of about {obj.estimated_rows} rows); reload to update"

    @admin.display(description="download")
    def downloads(self, obj: AuditExport) -> str:
        if obj.status != AuditExport.Status.DONE:
            return "available when the export is done"
        manifest = reverse("admin:audit_auditexport_manifest", args=[obj.pk])
        if obj.file_path:
            file_url = reverse("admin:audit_auditexport_download", args=[obj.pk])
            return format_html('<a href="{}">export file</a> · <a href="{}">manifest</a>', file_url, manifest)
        return format_html('<a href="{}">manifest</a> (the file was streamed to its requester)', manifest)

    def get_urls(self) -> list:
        custom = [
            path(
                "<int:export_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="audit_auditexport_download",
            ),
            path(
                "<int:export_id>/manifest/",
                self.admin_site.admin_view(self.manifest_view),
                name="audit_auditexport_manifest",
            ),
        ]
        return custom + super().get_urls()

    def download_view(self, request: HttpRequest, export_id: int) -> HttpResponse:
        """Serve a finished background export; each download is itself audited."""
        if not request.user.has_perm(EXPORT_PERMISSION):
            raise PermissionDenied
        path_ = audit_export_file(export_id=export_id)
        audit_event_record(
            event_type=AuditEvent.Type.EXPORT,
            action="audit.export.download",
            actor=actor_of(request.user),
            detail={"export_id": export_id},
        )
        return FileResponse(path_.open("rb"), as_attachment=True, filename=path_.name)

    def manifest_view(self, request: HttpRequest, export_id: int) -> HttpResponse:
        """The export's signed manifest as a JSON download."""
        if not request.user.has_perm(EXPORT_PERMISSION):
            raise PermissionDenied
        # AuditExportNotFound / AuditExportNotReady become 404 / 409 problems, as on the REST endpoint.
        manifest = audit_export_manifest_get(export_id=export_id)
        response = JsonResponse(manifest, json_dumps_params={"indent": 1})
        name = f"audit-export-{export_id}.{manifest['format']}.manifest.json"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


@admin.register(TenantRetention)
class TenantRetentionAdmin(admin.ModelAdmin):
    """Retention per tenant; saved through ``retention_set`` so the change is audited."""

    list_display = ("tenant_slug", "retention_days", "updated_by", "updated_at")
    readonly_fields = ("updated_by", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple:
        return (*self.readonly_fields, "tenant_slug") if obj else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: TenantRetention, form: Any, change: bool) -> None:
        saved = retention_set(
            tenant_slug=obj.tenant_slug, retention_days=obj.retention_days, actor=actor_of(request.user)
        )
        obj.pk = saved.pk


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):
    """Legal holds; placed and released through their services (audited)."""

    list_display = ("tenant_slug", "reason", "placed_by", "placed_at", "released_at")
    list_filter = ("released_at",)
    actions = ["release_holds"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple:
        if obj is None:
            return ("placed_by", "placed_at", "released_by", "released_at", "released_reason")
        return ("tenant_slug", "reason", "placed_by", "placed_at", "released_by", "released_at", "released_reason")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LegalHold, form: Any, change: bool) -> None:
        if change:
            return  # holds are immutable; release them with the action
        hold = legal_hold_place(tenant_slug=obj.tenant_slug, reason=obj.reason, actor=actor_of(request.user))
        obj.pk = hold.pk

    @admin.action(description="Release selected legal holds", permissions=["change"])
    def release_holds(self, request: HttpRequest, queryset: QuerySet[LegalHold]) -> None:
        released = 0
        for hold in queryset.filter(released_at__isnull=True):
            legal_hold_release(hold_id=hold.pk, actor=actor_of(request.user), reason="released in the admin")
            released += 1
        self.message_user(request, f"Released {released} legal hold(s).", messages.SUCCESS)
