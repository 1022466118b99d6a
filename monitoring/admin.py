"""Django admin of post-market monitoring: windows of live statistics and the monitors' verdicts.

Both are records, not settings: read-only here (counts come from the request
path, verdicts from the beat task; thresholds are edited as ``monitoring``
rules in the policies).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from core.admin_confirm import confirm_with_reason
from monitoring.models import Alert, LiveWindow, MonitorResult
from monitoring.services import alert_close


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
    actions = ("close_selected",)
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
