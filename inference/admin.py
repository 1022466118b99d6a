"""Django admin for the model registry and training runs.

Every change goes through the services, so admin changes are audited and
reach all gateway processes exactly like command-line changes: versions are
activated, rolled back and retired with actions, governance fields are
edited through ``model_version_update``, and "Add training run" records a
run that a Celery worker executes (training never runs in a web process).
Registry rows cannot be added or deleted here: files are registered with
``register_model`` or trained, and withdrawn by retiring them.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core.admin_confirm import confirm_with_reason
from core.errors import DomainError
from inference.model_card import STATED_FIELDS, card_html, card_json, card_missing
from inference.models import ModelRollout, ModelVersion, TrainingRun
from inference.profile import reference_profile_summary
from inference.rollout_metrics import rollout_figures
from inference.runtime import sessions
from inference.services import (
    model_version_activate,
    model_version_retire,
    model_version_rollback,
    model_version_update,
    training_run_create,
)
from inference.services.rollouts import rollout_promote, rollout_rollback, rollout_start


def _actor(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


def _pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


#: The stated model card fields edited as text in the admin (per-class metrics as JSON, below).
CARD_TEXT_FIELDS = tuple(key for key in STATED_FIELDS if key != "metrics_per_class")


def _card_field(key: str) -> forms.CharField:
    return forms.CharField(
        label=STATED_FIELDS[key],
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Required before activation at risk tier 'high'.",
    )


class _ModelVersionFormBase(forms.ModelForm):
    """The registry row's editable governance fields plus the model card's stated text fields."""

    class Meta:
        model = ModelVersion
        fields = ("risk_tier", "region", "model_card")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        card = (self.instance.card or {}) if self.instance.pk else {}
        for key in CARD_TEXT_FIELDS:
            self.fields[f"card_{key}"].initial = card.get(key, "")
        self.fields["card_metrics_per_class"].initial = card.get("metrics_per_class")
        self.fields["model_card"].label = "Model card notes (free text)"


class _OptionalJSONField(forms.JSONField):
    """A JSON field whose absent value shows as an empty box, not the word ``null``."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


# The card's text fields are declared on the class (the admin checks declared fields), one per stated field.
ModelVersionForm = type(
    "ModelVersionForm",
    (_ModelVersionFormBase,),
    {
        **{f"card_{key}": _card_field(key) for key in CARD_TEXT_FIELDS},
        "card_metrics_per_class": _OptionalJSONField(
            label="Metrics per class (JSON)",
            required=False,
            widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
            help_text='{"label": {"recall": 0.97, ...}, ...}; empty: the per-class recall recorded at training.',
        ),
    },
)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Registry rows with lifecycle actions; checksum, signature and lineage are read-only."""

    form = ModelVersionForm

    # Fits 1366 px with the filters; checksum, provider and author are on each version's page.
    list_display = (
        "name",
        "version",
        "status",
        "accuracy_display",
        "sha256_prefix",
        "risk_tier",
        "region",
        "created_at",
        "activated_at",
    )
    list_filter = ("status", "name", "risk_tier", "region")
    search_fields = ("name", "sha256", "created_by")
    ordering = ("name", "-version")
    actions = ("activate_selected", "rollback_selected", "retire_selected")
    fields = (
        "name",
        "version",
        "status",
        "provider_display",
        "risk_tier",
        "region",
        "card_display",
        *(f"card_{key}" for key in CARD_TEXT_FIELDS),
        "card_metrics_per_class",
        "model_card",
        "reference_profile_display",
        "file_path",
        "sha256",
        "file_size",
        "input_width",
        "value_min",
        "value_max",
        "labels",
        "output_kind",
        "plausible_min",
        "plausible_max",
        "signature_display",
        "metrics_display",
        "lineage_display",
        "created_by",
        "created_at",
        "activated_at",
        "retired_at",
    )
    readonly_fields = tuple(
        f
        for f in fields
        if (f not in {"risk_tier", "region", "model_card"} and not f.startswith("card_")) or f == "card_display"
    )

    def get_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> Any:
        """Viewers without change rights see the card summary and downloads, not the edit fields."""
        fields = super().get_fields(request, obj)
        if self.has_change_permission(request, obj):
            return fields
        return [f for f in fields if not f.startswith("card_") or f == "card_display"]

    def get_urls(self) -> list[Any]:
        """Model card downloads: ``<pk>/card.json`` and ``<pk>/card.html``."""
        own = [
            path(
                "<int:pk>/card.<str:fmt>",
                self.admin_site.admin_view(self.card_download),
                name="inference_modelversion_card",
            )
        ]
        return own + super().get_urls()

    def card_download(self, request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
        """The version's model card as a JSON or HTML attachment (anyone who may view the version)."""
        version = get_object_or_404(ModelVersion, pk=pk)
        if not self.has_view_permission(request, version):
            return HttpResponse(status=403)
        if fmt == "json":
            response = HttpResponse(card_json(version), content_type="application/json; charset=utf-8")
        elif fmt == "html":
            response = HttpResponse(card_html(version), content_type="text/html; charset=utf-8")
        else:
            return HttpResponse(status=404)
        response["Content-Disposition"] = f'attachment; filename="model-card-{version.name}-v{version.version}.{fmt}"'
        return response

    @admin.display(description="model card")
    def card_display(self, obj: ModelVersion) -> str:
        missing = card_missing(obj)
        state = (
            format_html('<strong style="color:#ba2121">incomplete for risk tier high: {}</strong>', ", ".join(missing))
            if missing
            else "complete for its risk tier"
        )
        return format_html(
            '{} &middot; download <a href="{}">JSON</a> / <a href="{}">HTML</a>',
            state,
            reverse("admin:inference_modelversion_card", args=[obj.pk, "json"]),
            reverse("admin:inference_modelversion_card", args=[obj.pk, "html"]),
        )

    @admin.display(description="reference profile")
    def reference_profile_display(self, obj: ModelVersion) -> str:
        summary = reference_profile_summary(obj.reference_profile)
        return _pretty_json(summary) if summary else "no reference profile"

    @admin.display(description="accuracy")
    def accuracy_display(self, obj: ModelVersion) -> str:
        return f"{obj.accuracy:.4f}" if obj.accuracy is not None else "-"

    @admin.display(description="SHA-256")
    def sha256_prefix(self, obj: ModelVersion) -> str:
        return obj.sha256[:12]

    @admin.display(description="provider (this process)")
    def provider_display(self, obj: ModelVersion) -> str:
        loaded = sessions.peek(obj.name, obj.version)
        return loaded.provider if loaded else "not loaded"

    @admin.display(description="signature")
    def signature_display(self, obj: ModelVersion) -> str:
        return _pretty_json(obj.signature)

    @admin.display(description="metrics")
    def metrics_display(self, obj: ModelVersion) -> str:
        return _pretty_json(obj.metrics)

    @admin.display(description="lineage")
    def lineage_display(self, obj: ModelVersion) -> str:
        return _pretty_json(obj.lineage)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: Any, change: bool) -> None:
        """Governance edits go through the audited service, never a bare ``save()``."""
        try:
            model_version_update(
                version=obj,
                actor=_actor(request),
                risk_tier=form.cleaned_data.get("risk_tier"),
                region=form.cleaned_data.get("region"),
                model_card=form.cleaned_data.get("model_card"),
                card={key: form.cleaned_data.get(f"card_{key}") or "" for key in CARD_TEXT_FIELDS}
                | {"metrics_per_class": form.cleaned_data.get("card_metrics_per_class") or {}},
            )
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)

    def _run(self, request: HttpRequest, rows: QuerySet[ModelVersion], call: Any, verb: str) -> None:
        for row in rows:
            try:
                result = call(row)
            except DomainError as exc:
                self.message_user(request, f"{row.ref}: {exc.detail}", messages.ERROR)
            else:
                self.message_user(request, f"{verb} {result.ref}.", messages.SUCCESS)

    @admin.action(description="Activate selected versions (one per model; asks for a reason)")
    def activate_selected(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> Any:
        rows = list(queryset.order_by("name", "version"))
        names = [row.name for row in rows]
        if len(names) != len(set(names)):
            self.message_user(request, "Select at most one version per model to activate.", messages.ERROR)
            return None
        actor = _actor(request)
        return confirm_with_reason(
            self,
            request,
            rows,
            title="Activate model versions",
            explanation="Every gateway process serves the selected version within seconds; "
            "the version active now becomes staged (roll back to return to it).",
            warnings=activation_warnings(rows),
            apply=lambda row, reason: (
                f"Activated {model_version_activate(version=row, actor=actor, reason=reason).ref}."
            ),
        )

    @admin.action(description="Roll back: re-activate the previously active version")
    def rollback_selected(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for name in sorted(set(queryset.values_list("name", flat=True))):
            try:
                version = model_version_rollback(name=name, actor=_actor(request))
            except DomainError as exc:
                self.message_user(request, f"{name}: {exc.detail}", messages.ERROR)
            else:
                self.message_user(request, f"Rolled back {name} to {version.ref}.", messages.SUCCESS)

    @admin.action(description="Retire selected versions (asks for a reason)")
    def retire_selected(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> Any:
        actor = _actor(request)
        rows = list(queryset.order_by("name", "version"))
        active = [row.ref for row in rows if row.status == ModelVersion.Status.ACTIVE]
        warnings = (
            [f"{', '.join(active)} is active and will be refused: activate another version first."] if active else []
        )
        return confirm_with_reason(
            self,
            request,
            rows,
            title="Retire model versions",
            explanation="A retired version can never be served or activated again (register the file anew).",
            warnings=warnings,
            apply=lambda row, reason: f"Retired {model_version_retire(version=row, actor=actor, reason=reason).ref}.",
        )


def activation_warnings(rows: list[ModelVersion]) -> list[str]:
    """Warn when a version to activate has a lower recorded accuracy than the active one of its name."""
    active = {row.name: row for row in ModelVersion.objects.filter(name__in={r.name for r in rows}, status="active")}
    warnings = []
    for row in rows:
        current = active.get(row.name)
        if current is None or current.pk == row.pk:
            continue
        if row.accuracy is not None and current.accuracy is not None and row.accuracy < current.accuracy:
            warnings.append(
                f"{row.ref} has a lower recorded accuracy ({row.accuracy:.4f}) than the active "
                f"{current.ref} ({current.accuracy:.4f})."
            )
        elif row.accuracy is None and current.accuracy is not None:
            warnings.append(f"{row.ref} has no recorded accuracy; the active {current.ref} has {current.accuracy:.4f}.")
    return warnings


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    """Start training ("Add training run") and follow its progress; a Celery worker does the work."""

    list_display = (
        "id",
        "model_name",
        "status",
        "progress_display",
        "message",
        "model_version",
        "requested_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "model_name")
    ordering = ("-created_at",)
    actions = ("start_again",)
    request_fields = ("model_name", "epochs", "batch_size", "seed", "activate", "region", "risk_tier")
    result_fields = (
        "status",
        "progress_display",
        "message",
        "model_version",
        "error",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
    )

    @admin.display(description="progress")
    def progress_display(self, obj: TrainingRun) -> str:
        return f"{obj.progress:.0%}"

    def get_fields(self, request: HttpRequest, obj: TrainingRun | None = None) -> tuple[str, ...]:
        return self.request_fields if obj is None else self.request_fields + self.result_fields

    def get_readonly_fields(self, request: HttpRequest, obj: TrainingRun | None = None) -> tuple[str, ...]:
        return () if obj is None else self.request_fields + self.result_fields

    def has_delete_permission(self, request: HttpRequest, obj: TrainingRun | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: TrainingRun, form: Any, change: bool) -> None:
        """Adding a run records it and enqueues the Celery task (after commit); nothing trains here."""
        if change:
            return
        run = training_run_create(
            actor=_actor(request),
            model_name=obj.model_name,
            epochs=obj.epochs,
            batch_size=obj.batch_size,
            seed=obj.seed,
            activate=obj.activate,
            region=obj.region,
            risk_tier=obj.risk_tier,
        )
        obj.pk = run.pk
        obj.status = run.status
        self.message_user(request, f"Training run #{run.pk} queued; a worker will train {run.model_name}.")

    @admin.action(description="Start again with the same settings")
    def start_again(self, request: HttpRequest, queryset: QuerySet[TrainingRun]) -> None:
        for run in queryset:
            new = training_run_create(
                actor=_actor(request),
                model_name=run.model_name,
                epochs=run.epochs,
                batch_size=run.batch_size,
                seed=run.seed,
                activate=run.activate,
                region=run.region,
                risk_tier=run.risk_tier,
            )
            self.message_user(request, f"Training run #{new.pk} queued (settings of #{run.pk}).")


# --- rollouts ------------------------------------------------------------------------

#: The figures shown side by side per version: (label, key of ``VersionFigures.as_dict``).
FIGURE_ROWS = (
    ("role", "role"),
    ("requests", "requests"),
    ("error rate", "error_rate"),
    ("mean latency (ms)", "latency_ms"),
    ("p95 latency (ms)", "latency_p95_ms"),
    ("review-flag rate", "review_rate"),
    ("agreement with stable", "agreement"),
)


class RolloutStartForm(forms.Form):
    """Start a rollout or change the one in progress (the service validates everything again)."""

    name = forms.CharField(max_length=100)
    version = forms.IntegerField(min_value=1)
    mode = forms.ChoiceField(choices=[("canary", "Canary"), ("shadow", "Shadow")])
    canary_percent = forms.CharField(
        required=False, max_length=20, help_text="Canary only: share of eligible API keys, above 0 to 100."
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "cols": 80}), help_text="Kept in the audit trail.")
    max_error_rate = forms.FloatField(required=False, help_text="Roll back above this 5xx share (0-1).")
    max_latency_ms = forms.FloatField(required=False, help_text="Roll back above this mean canary latency.")
    max_review_rate = forms.FloatField(required=False, help_text="Roll back above this review-flag share (0-1).")
    min_agreement = forms.FloatField(required=False, help_text="Roll back below this agreement with stable (0-1).")
    min_requests = forms.IntegerField(required=False, min_value=1, help_text="Requests before a version is judged.")


@admin.register(ModelRollout)
class ModelRolloutAdmin(admin.ModelAdmin):
    """Rollouts with their per-version figures side by side; start, promote and roll back through the services."""

    list_display = (
        "id",
        "name",
        "state",
        "stable_version",
        "canary_display",
        "shadow_display",
        "created_by",
        "created_at",
        "ended_at",
    )
    list_filter = ("state", "name")
    ordering = ("-created_at",)
    actions = ("promote_selected", "rollback_selected")
    readonly_fields = (
        "name",
        "state",
        "stable_version",
        "canary_display",
        "shadow_display",
        "figures_display",
        "max_error_rate",
        "max_latency_ms",
        "max_review_rate",
        "min_agreement",
        "min_requests",
        "reason",
        "created_by",
        "created_at",
        "ended_by",
        "ended_at",
        "end_reason",
    )
    fields = readonly_fields
    change_list_template = "admin/inference/modelrollout/change_list.html"

    @admin.display(description="canary")
    def canary_display(self, obj: ModelRollout) -> str:
        return f"v{obj.canary_version} at {obj.canary_percent:g} %" if obj.canary_version is not None else "-"

    @admin.display(description="shadows")
    def shadow_display(self, obj: ModelRollout) -> str:
        return ", ".join(f"v{v}" for v in obj.shadow_versions) or "-"

    @admin.display(description="figures per version (from the audit trail)")
    def figures_display(self, obj: ModelRollout) -> str:
        figures = [f.as_dict() for f in rollout_figures(rollout=obj).values()]
        head = format_html_join("", "<th>v{}</th>", ((f["version"],) for f in figures))
        body = format_html_join(
            "",
            "<tr><th>{}</th>{}</tr>",
            (
                (label, format_html_join("", "<td>{}</td>", (("-" if f[key] is None else f[key],) for f in figures)))
                for label, key in FIGURE_ROWS
            ),
        )
        return format_html('<table class="rollout-figures"><thead><tr><th></th>{}</tr></thead>{}</table>', head, body)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # "Start a rollout" (start_view) goes through the audited service

    def has_change_permission(self, request: HttpRequest, obj: ModelRollout | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ModelRollout | None = None) -> bool:
        return False

    def get_urls(self):
        custom = [
            path("start/", self.admin_site.admin_view(self.start_view), name="inference_modelrollout_start"),
        ]
        return custom + super().get_urls()

    def start_view(self, request: HttpRequest) -> HttpResponse:
        """Start or change a rollout: a canary at a percentage, or a shadow."""
        if not request.user.has_perm("inference.change_modelversion"):
            raise PermissionDenied
        form = RolloutStartForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            canary = data["mode"] == "canary"
            try:
                rollout = rollout_start(
                    name=data["name"],
                    version=data["version"],
                    actor=_actor(request),
                    canary_percent=(data["canary_percent"] or "") if canary else None,
                    shadow=not canary,
                    reason=data["reason"],
                    max_error_rate=data["max_error_rate"],
                    max_latency_ms=data["max_latency_ms"],
                    max_review_rate=data["max_review_rate"],
                    min_agreement=data["min_agreement"],
                    min_requests=data["min_requests"],
                )
            except DomainError as exc:
                form.add_error(None, exc.detail)
            else:
                self.message_user(request, f"Rollout #{rollout.pk} of {rollout.name} updated.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:inference_modelrollout_change", args=[rollout.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Start or change a rollout",
            "opts": self.model._meta,
            "form": form,
        }
        return TemplateResponse(request, "admin/inference/modelrollout/start.html", context)

    @admin.action(description="Promote the canary of selected rollouts (asks for a reason)")
    def promote_selected(self, request: HttpRequest, queryset: QuerySet[ModelRollout]) -> Any:
        actor = _actor(request)
        return confirm_with_reason(
            self,
            request,
            list(queryset.order_by("name")),
            title="Promote canaries",
            explanation="Each canary becomes the active version for every caller; the rollout and its shadows end.",
            apply=lambda row, reason: (
                f"{rollout_promote(name=row.name, actor=actor, reason=reason).name}@{row.canary_version} is active"
            ),
        )

    @admin.action(description="Roll back selected rollouts: everyone on stable (asks for a reason)")
    def rollback_selected(self, request: HttpRequest, queryset: QuerySet[ModelRollout]) -> Any:
        actor = _actor(request)
        rows = [row for row in queryset.order_by("name") if row.state == ModelRollout.State.ACTIVE]
        if not rows:
            self.message_user(request, "None of the selected rollouts is in progress.", messages.WARNING)
            return None
        return confirm_with_reason(
            self,
            request,
            rows,
            title="Roll back rollouts",
            explanation="Every caller is served the stable version again within about a second; shadows stop.",
            apply=lambda row, reason: (
                f"rollout #{row.pk} rolled back"
                if rollout_rollback(name=row.name, actor=actor, reason=reason, rollout_id=row.pk)
                else f"rollout #{row.pk} had already ended"
            ),
        )
