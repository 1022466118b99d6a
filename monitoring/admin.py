"""Django admin of post-market monitoring: windows, verdicts, alerts, and the incident desk.

Windows and results are records, not settings: read-only here (counts come
from the request path, verdicts from the beat task; thresholds are edited as
``monitoring`` rules in the policies).  Alerts are closed or escalated to
incidents; incidents are acted on only through the audited services (kill
switch, notes, reported, release, close, regulator bundle), never edited.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import FileResponse, HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from audit.models import AuditEvent
from audit.services import audit_event_record
from core.admin_confirm import confirm_with_form, confirm_with_reason
from core.errors import DomainError
from monitoring.models import (
    Alert,
    Incident,
    IncidentNote,
    LiveWindow,
    MonitorResult,
    RegulatorBundle,
    WebhookDelivery,
    WebhookEndpoint,
)
from monitoring.selectors import incidents_overdue
from monitoring.services import (
    alert_close,
    incident_bundle_request,
    incident_close,
    incident_escalate,
    incident_kill_switch,
    incident_mark_reported,
    incident_note_add,
    incident_open,
    incident_release,
    regulator_bundle_file,
)
from monitoring.services.incidents import deadline_table
from monitoring.services.webhooks import webhook_delivery_requeue


def _pretty(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LiveWindow)
class LiveWindowAdmin(_ReadOnly):
    """Counts per model version and window (all processes merged); never inputs."""

    list_display = (
        "model_version",
        "window_start",
        "requests",
        "instances",
        "review_flags",
        "denials",
        "client_errors",
        "server_errors",
        "flushes",
    )
    list_filter = ("model_version__name",)
    date_hierarchy = "window_start"
    list_select_related = ("model_version",)
    exclude = ("feature_counts",)
    readonly_fields = ("prediction_counts_display", "confidence_counts_display")

    @admin.display(description="predicted labels / value bins")
    def prediction_counts_display(self, obj: LiveWindow) -> str:
        return _pretty(obj.prediction_counts)

    @admin.display(description="top-class confidence by tenth")
    def confidence_counts_display(self, obj: LiveWindow) -> str:
        return _pretty(obj.confidence_counts)


@admin.register(MonitorResult)
class MonitorResultAdmin(_ReadOnly):
    """The monitors' verdict per window: measures, breaches, actions, the policy versions that judged."""

    list_display = ("model_version", "window_start", "status", "instances", "has_reference", "breach_summary")
    list_filter = ("status", "has_reference", "model_version__name")
    date_hierarchy = "window_start"
    list_select_related = ("model_version",)
    readonly_fields = ("measures_display", "breaches_display", "actions_display")
    exclude = ("measures", "breaches", "actions")

    @admin.display(description="breaches")
    def breach_summary(self, obj: MonitorResult) -> str:
        if not obj.has_reference and not obj.breaches:
            return "no reference profile" if obj.status != MonitorResult.Status.UNWATCHED else "-"
        return ", ".join(f"{b['measure']} {b['value']} ({b['mode']})" for b in obj.breaches) or "-"

    @admin.display(description="measures")
    def measures_display(self, obj: MonitorResult) -> str:
        return _pretty(obj.measures)

    @admin.display(description="breaches")
    def breaches_display(self, obj: MonitorResult) -> str:
        return _pretty(obj.breaches)

    @admin.display(description="actions taken")
    def actions_display(self, obj: MonitorResult) -> str:
        return _pretty(obj.actions)


@admin.register(Alert)
class AlertAdmin(_ReadOnly):
    """Alerts opened by enforce monitoring rules; *Close…* asks for a note (audited)."""

    list_display = ("id", "model_version", "rule_id", "status", "windows", "opened_at", "last_seen_at", "closed_by")
    list_filter = ("status", "model_version__name")
    list_select_related = ("model_version",)
    actions = ("close_selected", "escalate_selected")
    readonly_fields = ("measures_display",)
    exclude = ("measures",)

    @admin.display(description="measures that breached")
    def measures_display(self, obj: Alert) -> str:
        return _pretty(obj.measures)

    def has_close_permission(self, request: HttpRequest) -> bool:
        """Closing is a change of the alert (the model is read-only otherwise)."""
        return request.user.has_perm("monitoring.change_alert")

    @admin.action(description="Close…", permissions=["close"])
    def close_selected(self, request: HttpRequest, queryset: Any) -> Any:
        rows = list(queryset.select_related("model_version"))
        actor = f"staff:{request.user.get_username()}"
        return confirm_with_reason(
            self,
            request,
            rows,
            title="Close alerts",
            explanation="Closing records your note in the audit trail; a later breach of the rule opens a new alert.",
            apply=lambda row, reason: f"Closed {alert_close(alert=row, actor=actor, note=reason)}.",
        )

    @admin.action(description="Escalate to an incident…", permissions=["close"])
    def escalate_selected(self, request: HttpRequest, queryset: Any) -> Any:
        rows = list(queryset.select_related("model_version"))
        actor = f"staff:{request.user.get_username()}"

        def apply(row: Alert, data: dict[str, Any]) -> str:
            incident, created = incident_escalate(
                alert=row, severity=data["severity"], category=data["category"], actor=actor, title=data["title"]
            )
            done = "Opened" if created else "Already escalated:"
            return f"{done} {incident}; evidence of {row.model_version.name!r} frozen."

        return confirm_with_form(
            self,
            request,
            rows,
            title="Escalate alerts to incidents",
            explanation=(
                "An incident starts its statutory reporting clock and freezes the model's evidence: no version of "
                "it can be activated, rolled back or retired until the incident is released or closed."
            ),
            apply=apply,
            form_class=IncidentFieldsForm,
        )


def _category_choices() -> list[tuple[str, str]]:
    return [(name, f"{name} ({days} days)") for name, days in sorted(deadline_table().items())]


class IncidentFieldsForm(forms.Form):
    """Severity, statutory category (which sets the deadline) and a title."""

    title = forms.CharField(max_length=200, required=False, help_text="Defaults to the alert's rule.")
    severity = forms.ChoiceField(choices=Incident.Severity.choices)
    category = forms.ChoiceField(choices=_category_choices, help_text="Sets the reporting deadline.")


class IncidentOpenForm(forms.ModelForm):
    """Open an incident directly on a model version (no alert)."""

    category = forms.ChoiceField(choices=_category_choices, help_text="Sets the reporting deadline.")

    class Meta:
        model = Incident
        fields = ("model_version", "title", "severity", "category")


def _text_form(label: str, help_text: str) -> type[forms.Form]:
    return type(
        "TextForm",
        (forms.Form,),
        {
            "reason": forms.CharField(
                label=label, help_text=help_text, strip=True, widget=forms.Textarea(attrs={"rows": 3, "cols": 80})
            )
        },
    )


class OverdueFilter(admin.SimpleListFilter):
    """Incidents past their reporting deadline without a report."""

    title = "reporting deadline"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Overdue")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "yes":
            return queryset.filter(pk__in=incidents_overdue().values("pk"))
        return queryset


class IncidentNoteInline(admin.TabularInline):
    """The timeline: notes and actions, oldest first (written by the services only)."""

    model = IncidentNote
    extra = 0
    can_delete = False
    fields = ("at", "actor", "kind", "action", "text")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _span(delta: timedelta) -> str:
    """A reporting clock's distance in the unit a person reads it: days, else hours, else under an hour."""
    if delta.days:
        return f"{delta.days} day{'s' if delta.days != 1 else ''}"
    hours = delta.seconds // 3600
    return f"{hours} h" if hours else "under an hour"


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    """The incident desk: statutory clocks, the evidence freeze and every action, audited."""

    # Fits 1366 px beside the filters: the clock says in words what the deadline means now.
    list_display = ("title", "model_version", "severity", "category_label", "status", "deadline", "clock")
    list_display_links = ("title",)
    list_filter = (OverdueFilter, "status", "severity", "category")
    list_select_related = ("model_version",)
    inlines = (IncidentNoteInline,)
    actions = (
        "engage_kill_switch",
        "add_note",
        "mark_reported",
        "release_evidence",
        "close_incident",
        "build_bundle",
    )
    exclude = ("snapshot",)
    readonly_fields = ("snapshot_display", "bundles_display")

    @admin.display(description="category", ordering="category")
    def category_label(self, obj: Incident) -> str:
        return obj.category.replace("_", " ")

    @admin.display(description="reporting clock", ordering="deadline")
    def clock(self, obj: Incident) -> str:
        """``overdue by 1 day``, ``due in 14 days``, or the reference once reported (Art. 73 deadlines)."""
        if obj.reported_at is not None:
            return f"reported ({obj.authority_reference})" if obj.authority_reference else "reported"
        if obj.status == Incident.Status.CLOSED:
            return "closed"
        now = timezone.now()
        if obj.is_overdue(now):
            return format_html("<strong>overdue by {}</strong>", _span(now - obj.deadline))
        return f"due in {_span(obj.deadline - now)}"

    @admin.display(description="signed snapshot at opening")
    def snapshot_display(self, obj: Incident) -> str:
        return _pretty({**obj.snapshot, "signature": obj.snapshot_signature})

    @admin.display(description="regulator bundles")
    def bundles_display(self, obj: Incident) -> str:
        parts = []
        for bundle in obj.bundles.order_by("-requested_at")[:10]:
            if bundle.status == RegulatorBundle.Status.DONE:
                url = reverse("admin:monitoring_regulatorbundle_download", args=[bundle.pk])
                parts.append(format_html('<a href="{}">bundle #{}</a> ({})', url, bundle.pk, bundle.sha256[:12]))
            else:
                parts.append(format_html("bundle #{}: {}", bundle.pk, bundle.status))
        return format_html("<br>".join(["{}"] * len(parts)), *parts) if parts else "none yet (action Build bundle)"

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = IncidentOpenForm
            kwargs["fields"] = IncidentOpenForm.Meta.fields
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return IncidentOpenForm.Meta.fields
        return super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return [f.name for f in Incident._meta.fields if f.name != "snapshot"] + list(self.readonly_fields)

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Incident, form: Any, change: bool) -> None:
        """Opening goes through ``incident_open`` (snapshot, freeze, audit); nothing else is saved here."""
        if change:
            return
        created = incident_open(
            version=form.cleaned_data["model_version"],
            title=form.cleaned_data["title"],
            severity=form.cleaned_data["severity"],
            category=form.cleaned_data["category"],
            actor=f"staff:{request.user.get_username()}",
        )
        obj.__dict__.update(created.__dict__)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_act_permission(self, request: HttpRequest) -> bool:
        """Acting on an incident is a change of it (the page itself is read-only)."""
        return request.user.has_perm("monitoring.change_incident")

    def _act(
        self,
        request: HttpRequest,
        queryset: Any,
        *,
        title: str,
        explanation: str,
        label: str,
        help_text: str,
        apply: Any,
    ) -> Any:
        rows = list(queryset.select_related("model_version"))
        actor = f"staff:{request.user.get_username()}"
        return confirm_with_form(
            self,
            request,
            rows,
            title=title,
            explanation=explanation,
            apply=lambda row, data: apply(row, data["reason"], actor),
            form_class=_text_form(label, help_text),
        )

    @admin.action(description="Engage the model's kill switch…", permissions=["act"])
    def engage_kill_switch(self, request: HttpRequest, queryset: Any) -> Any:
        return self._act(
            request,
            queryset,
            title="Engage kill switch",
            label="Reason",
            help_text="Kept in the kill switch record.",
            explanation="Every request to the model is refused within about a second, in every process.",
            apply=lambda row, text, actor: f"Engaged {incident_kill_switch(incident=row, actor=actor, reason=text)}.",
        )

    @admin.action(description="Attach a note…", permissions=["act"])
    def add_note(self, request: HttpRequest, queryset: Any) -> Any:
        return self._act(
            request,
            queryset,
            title="Attach a note",
            label="Note",
            help_text="Added to the timeline and the audit trail.",
            explanation="The note joins the incident's timeline and the regulator bundle.",
            apply=lambda row, text, actor: (
                f"Note added to {incident_note_add(incident=row, actor=actor, text=text).incident}."
            ),
        )

    @admin.action(description="Mark reported…", permissions=["act"])
    def mark_reported(self, request: HttpRequest, queryset: Any) -> Any:
        return self._act(
            request,
            queryset,
            title="Mark reported to the authority",
            label="Authority's reference",
            help_text="The case number the market surveillance authority gave.",
            explanation="Stops the deadline clock; the evidence stays frozen until release or closing.",
            apply=lambda row, text, actor: (
                f"Reported: {incident_mark_reported(incident=row, actor=actor, reference=text)}."
            ),
        )

    @admin.action(description="Release the evidence freeze…", permissions=["act"])
    def release_evidence(self, request: HttpRequest, queryset: Any) -> Any:
        return self._act(
            request,
            queryset,
            title="Release evidence",
            label="Reason",
            help_text="Required; kept in the audit trail.",
            explanation="The model's versions may be activated or retired again; the incident stays on the desk.",
            apply=lambda row, text, actor: f"Released {incident_release(incident=row, actor=actor, reason=text)}.",
        )

    @admin.action(description="Close with root cause…", permissions=["act"])
    def close_incident(self, request: HttpRequest, queryset: Any) -> Any:
        return self._act(
            request,
            queryset,
            title="Close incidents",
            label="Root cause",
            help_text="Required; kept in the record.",
            explanation="Closing lifts the evidence freeze and stops the deadline clock.",
            apply=lambda row, text, actor: f"Closed {incident_close(incident=row, actor=actor, root_cause=text)}.",
        )

    @admin.action(description="Build regulator bundle", permissions=["act"])
    def build_bundle(self, request: HttpRequest, queryset: Any) -> None:
        actor = f"staff:{request.user.get_username()}"
        for row in queryset:
            try:
                bundle = incident_bundle_request(incident=row, actor=actor)
            except DomainError as exc:
                self.message_user(request, f"{row}: {exc.detail}", messages.ERROR)
            else:
                self.message_user(request, f"{bundle} queued; it appears on the incident page when done.")


@admin.register(RegulatorBundle)
class RegulatorBundleAdmin(_ReadOnly):
    """Regulator bundles built per incident; download when done (each download audited)."""

    list_display = ("id", "incident", "status", "requested_by", "requested_at", "finished_at", "size", "download")
    list_filter = ("status",)
    list_select_related = ("incident__model_version",)

    @admin.display(description="download")
    def download(self, obj: RegulatorBundle) -> str:
        if obj.status != RegulatorBundle.Status.DONE:
            return obj.error[:100] or "-"
        return format_html('<a href="{}">zip</a>', reverse("admin:monitoring_regulatorbundle_download", args=[obj.pk]))

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "<str:bundle_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="monitoring_regulatorbundle_download",
            )
        ]
        return own + super().get_urls()

    def download_view(self, request: HttpRequest, bundle_id: str) -> HttpResponse:
        """The archive as an attachment; a bad id is a 404 problem, an unfinished bundle a 409 (DomainError)."""
        if not request.user.has_perm("monitoring.view_regulatorbundle"):
            return HttpResponse(status=403)
        path_ = regulator_bundle_file(bundle_id=bundle_id)
        audit_event_record(
            event_type=AuditEvent.Type.MONITORING,
            action="monitoring.incident_bundle_download",
            actor=f"staff:{request.user.get_username()}",
            detail={"bundle_id": bundle_id},
        )
        return FileResponse(path_.open("rb"), as_attachment=True, filename=path_.name)


class WebhookEndpointForm(forms.ModelForm):
    """The secret is write-only: typed in, never shown again."""

    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        strip=True,
        help_text="HMAC-SHA256 key; leave empty to keep the current one.",
    )
    kinds = forms.MultipleChoiceField(choices=WebhookEndpoint.Kind.choices, widget=forms.CheckboxSelectMultiple)
    url = forms.URLField(max_length=500, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ("name", "url", "secret", "tenant_slug", "kinds", "enabled")

    def clean_secret(self) -> str:
        secret = self.cleaned_data.get("secret", "")
        if not secret and self.instance.pk:
            return self.instance.secret
        if len(secret) < 16:
            raise forms.ValidationError("Use a secret of at least 16 characters.")
        return secret


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Operators' webhook receivers (signed with each endpoint's secret); changes are audited."""

    form = WebhookEndpointForm
    list_display = ("name", "url", "tenant_slug", "kinds", "enabled", "created_at")
    list_filter = ("enabled",)

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        self._audit_delete(request, [obj])
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        self._audit_delete(request, list(queryset))
        super().delete_queryset(request, queryset)

    @staticmethod
    def _audit_delete(request: HttpRequest, rows: list[WebhookEndpoint]) -> None:
        for row in rows:
            audit_event_record(
                event_type=AuditEvent.Type.CONFIG_CHANGE,
                action="monitoring.webhook_endpoint_delete",
                actor=f"staff:{request.user.get_username()}",
                detail={"endpoint_id": row.pk, "url": row.url, "tenant": row.tenant_slug},
            )

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_event_record(
            event_type=AuditEvent.Type.CONFIG_CHANGE,
            action="monitoring.webhook_endpoint_save",
            actor=f"staff:{request.user.get_username()}",
            detail={
                "endpoint_id": obj.pk,
                "url": obj.url,
                "tenant": obj.tenant_slug,
                "kinds": obj.kinds,
                "enabled": obj.enabled,
                "changed": list(form.changed_data),
            },
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_ReadOnly):
    """The delivery log; filter *Dead letter* for deliveries that exhausted their retries, and requeue them."""

    list_display = (
        "id",
        "event",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "last_attempt_at",
        "next_attempt_at",
    )
    list_filter = ("status", "event__kind", "endpoint__tenant_slug")
    list_select_related = ("event", "endpoint")
    actions = ("requeue",)

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("monitoring.change_webhookendpoint")

    @admin.action(description="Requeue (fresh retry budget)", permissions=["requeue"])
    def requeue(self, request: HttpRequest, queryset: Any) -> None:
        sent = sum(1 for delivery in queryset if webhook_delivery_requeue(delivery=delivery))
        self.message_user(request, f"{sent} deliveries requeued.")
