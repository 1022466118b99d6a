"""Django admin for policy formulation, kill switches and the human-review queue.

Every write goes through ``policy.services`` (never ``obj.save()``), so admin
edits are validated like imports, versioned, audited and propagated to every
process.  Validation runs in the forms, so a rule that cannot be evaluated is
shown on the form instead of being stored.  Versions are read-only, policies
and kill switches are never deleted (they explain past decisions), and every
page requires the matching model permission.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from audit.models import AuditEvent
from core.errors import DomainError
from policy import services
from policy.documents import check_scope_target, check_window, versioned_spec
from policy.kill_switch_targets import kill_switch_blocks_now, kill_switch_target_describe
from policy.models import KillSwitch, Policy, PolicyVersion, ReviewItem
from policy.review_render import digit_image_svg, probability_chart_svg
from policy.rules import RULE_TYPES, RuleError, scope_rules_check, validate_document
from policy.selectors import request_decisions_get, review_override_rates

_FAILED = "_policy_admin_failed"


def _actor(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


def _service_failed(request: HttpRequest, exc: DomainError) -> None:
    """A service refused after form validation (a concurrent edit): report it and stay on the form."""
    messages.error(request, exc.detail)
    setattr(request, _FAILED, True)


class _ReadOnlyChangeMixin:
    """Change pages of rows that only services may modify: no Save buttons, no direct saves."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if object_id is not None:
            extra_context = {
                **(extra_context or {}),
                "show_save": False,
                "show_save_and_continue": False,
                "show_save_and_add_another": False,
            }
        return super().changeform_view(request, object_id, form_url, extra_context)

    def has_delete_permission(self, request, obj=None):
        return False


def _reason_action(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    title: str,
    label: str,
    eligible: Callable[[Any], bool],
    apply: Callable[[Any, str], None],
) -> HttpResponse | None:
    """An admin action that asks for mandatory text (a reason or note) before acting on each row."""
    rows = [obj for obj in queryset if eligible(obj)]
    if not rows:
        modeladmin.message_user(request, "None of the selected rows can take this action.", messages.WARNING)
        return None
    form = _ReasonForm(request.POST if "apply" in request.POST else None, label=label)
    if "apply" in request.POST and form.is_valid():
        done = 0
        for obj in rows:
            try:
                apply(obj, form.cleaned_data["text"])
                done += 1
            except DomainError as exc:
                modeladmin.message_user(request, f"{obj}: {exc.detail}", messages.ERROR)
        if done:
            modeladmin.message_user(request, f"{title}: {done} done.", messages.SUCCESS)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "rows": rows,
        "form": form,
        "action": request.POST.get("action"),
        "opts": modeladmin.model._meta,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/policy/action_with_text.html", context)


class _ReasonForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), strip=True)

    def __init__(self, *args, label: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["text"].label = label


# --- policies ---------------------------------------------------------------------


class PrettyJSONField(forms.JSONField):
    """A JSON textarea that shows the stored document indented, as staff will edit it."""

    def prepare_value(self, value):
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


_RULE_HELP = "; ".join(f"{name}: {rule.doc}" for name, rule in RULE_TYPES.items())


class PolicyForm(forms.ModelForm):
    """The policy editor: rules as JSON, plus the mandatory reason every version keeps."""

    document = PrettyJSONField(
        label="Rules",
        widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "class": "vLargeTextField"}),
        help_text=('A list of rules {"id", "type", "mode": "enforce"|"monitor", "params"}. Types: ' + _RULE_HELP + "."),
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 100}),
        help_text="Why this change? Kept with the new version and in the audit trail.",
    )

    class Meta:
        model = Policy
        fields = ["name", "scope", "tenant_slug", "model_name", "enabled", "effective_from", "effective_until"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.current_version_id and not self.is_bound:
            self.initial["document"] = self.instance.current_version.document
        elif not self.instance.pk:
            self.initial.setdefault("document", [])

    def clean(self):
        cleaned = super().clean()
        if "document" in cleaned:
            try:
                cleaned["rules"] = validate_document(cleaned["document"])
                scope_rules_check(
                    self.instance.scope if self.instance.pk else cleaned.get("scope", ""), cleaned["rules"]
                )
            except RuleError as exc:
                self.add_error("document", str(exc))
        if not self.instance.pk:
            try:
                check_scope_target(
                    scope=cleaned.get("scope", ""),
                    tenant_slug=cleaned.get("tenant_slug", ""),
                    model_name=cleaned.get("model_name", ""),
                )
            except RuleError as exc:
                self.add_error(None, str(exc))
        try:
            check_window(cleaned.get("effective_from"), cleaned.get("effective_until"))
        except RuleError as exc:
            self.add_error("effective_until", str(exc))
        if self.instance.pk and "rules" in cleaned and not self.errors:
            current = self.instance.current_version
            before = versioned_spec(
                rules=current.document if current else [],
                enabled=self.instance.enabled,
                effective_from=self.instance.effective_from,
                effective_until=self.instance.effective_until,
            )
            after = versioned_spec(
                rules=cleaned["rules"],
                enabled=cleaned.get("enabled", False),
                effective_from=cleaned.get("effective_from"),
                effective_until=cleaned.get("effective_until"),
            )
            if current is not None and before == after:
                self.add_error(None, "Nothing changed: no new version was created.")
        return cleaned

    def _post_clean(self):
        # The instance is written by the service; assigning cleaned values to it
        # here would make the "unchanged" comparison above meaningless.
        if self.instance.pk is None:
            super()._post_clean()


class PolicyVersionInline(admin.TabularInline):
    """The version history on a policy's page (read-only)."""

    model = PolicyVersion
    fields = ["number", "created_at", "author", "reason"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    ordering = ["-number"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    """Create and edit policies; each save creates a new immutable version through the service."""

    form = PolicyForm
    list_display = ["name", "scope", "target", "enabled", "effective_from", "effective_until", "version", "updated_at"]
    list_filter = ["scope", "enabled"]
    search_fields = ["name", "tenant_slug", "model_name"]
    inlines = [PolicyVersionInline]

    @admin.display(description="current version")
    def version(self, obj: Policy) -> str:
        return str(obj.version_number or "-")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("current_version")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return ["name", "scope", "tenant_slug", "model_name", "created_at", "updated_at"]
        return []

    def get_fields(self, request, obj=None):
        fields = ["name", "scope", "tenant_slug", "model_name", "enabled", "effective_from", "effective_until"]
        if obj is not None and not self.has_change_permission(request, obj):
            return [*fields, "created_at", "updated_at"]
        return [*fields, "document", "reason"] + (["created_at", "updated_at"] if obj is not None else [])

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            if change:
                services.policy_update(
                    policy=obj,
                    document=data["rules"],
                    enabled=data["enabled"],
                    effective_from=data["effective_from"],
                    effective_until=data["effective_until"],
                    actor=_actor(request),
                    reason=data["reason"],
                )
            else:
                created = services.policy_create(
                    name=data["name"],
                    scope=data["scope"],
                    tenant_slug=data["tenant_slug"],
                    model_name=data["model_name"],
                    document=data["rules"],
                    enabled=data["enabled"],
                    effective_from=data["effective_from"],
                    effective_until=data["effective_until"],
                    actor=_actor(request),
                    reason=data["reason"],
                )
                obj.pk = created.pk
                obj.current_version = created.current_version
                obj._state.adding = False
        except DomainError as exc:
            _service_failed(request, exc)

    def save_related(self, request, form, formsets, change):
        # Versions are created by the service; the inline is display-only.
        if not getattr(request, _FAILED, False):
            super().save_related(request, form, formsets, change)

    def log_addition(self, request, obj, message):
        if not getattr(request, _FAILED, False):
            super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        if not getattr(request, _FAILED, False):
            super().log_change(request, obj, message)

    def response_add(self, request, obj, post_url_continue=None):
        if getattr(request, _FAILED, False):
            return HttpResponseRedirect(request.path)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        if getattr(request, _FAILED, False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)


# --- versions (read-only) ------------------------------------------------------------


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    """Every version ever stored, with its diff; plus which versions decided a given request."""

    list_display = ["label", "policy", "number", "author", "created_at", "short_reason"]
    list_filter = ["policy__scope", "policy"]
    search_fields = ["policy__name", "author", "reason"]
    list_select_related = ["policy"]
    fields = [
        "policy",
        "number",
        "author",
        "created_at",
        "reason",
        "enabled",
        "effective_from",
        "effective_until",
        "rules",
        "diff_view",
    ]
    readonly_fields = fields

    @admin.display(description="reason")
    def short_reason(self, obj: PolicyVersion) -> str:
        return obj.reason if len(obj.reason) <= 80 else obj.reason[:79] + "…"

    @admin.display(description="rules")
    def rules(self, obj: PolicyVersion) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.document, indent=2, ensure_ascii=False))

    @admin.display(description="diff against the previous version")
    def diff_view(self, obj: PolicyVersion) -> str:
        return format_html("<pre>{}</pre>", obj.diff or "(no diff)")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        urls = super().get_urls()
        custom = [
            path(
                "decided-by/",
                self.admin_site.admin_view(self.decided_by_view),
                name="policy_policyversion_decided_by",
            )
        ]
        return custom + urls

    def decided_by_view(self, request: HttpRequest) -> HttpResponse:
        """Read-only: look up a request id in the audit trail and show the policy versions that decided it."""
        if not (self.has_view_permission(request) and request.user.has_perm("audit.view_auditevent")):
            raise PermissionDenied
        request_id = request.GET.get("request_id", "").strip()
        rows = []
        for item in request_decisions_get(request_id=request_id):
            links = format_html_join(
                ", ",
                "{}",
                (
                    (
                        format_html(
                            '<a href="{}">{}</a>',
                            reverse("admin:policy_policyversion_change", args=[version.pk]),
                            label,
                        )
                        if version is not None
                        else format_html("{} (not found)", label),
                    )
                    for label, version in item["versions"]
                ),
            )
            rows.append({"event": item["event"], "links": links})
        context = {
            **self.admin_site.each_context(request),
            "title": "Which policy versions decided a request",
            "opts": self.model._meta,
            "request_id": request_id,
            "rows": rows,
        }
        return TemplateResponse(request, "admin/policy/decided_by.html", context)


# --- kill switches ---------------------------------------------------------------------


class KillSwitchForm(forms.ModelForm):
    """Engaging a kill switch: target and a mandatory reason."""

    class Meta:
        model = KillSwitch
        fields = ["target_type", "target", "reason"]

    def clean(self):
        cleaned = super().clean()
        target_type, target = cleaned.get("target_type"), (cleaned.get("target") or "").strip()
        if target_type and target and kill_switch_target_describe(target_type=target_type, target=target) is None:
            kind = dict(KillSwitch.TargetType.choices)[target_type]
            self.add_error("target", f"No {kind.lower()} {target!r} exists; a kill switch for it would block nothing.")
            return cleaned
        if (
            target_type
            and target
            and KillSwitch.objects.filter(target_type=target_type, target=target, lifted_at__isnull=True).exists()
        ):
            raise forms.ValidationError(f"A kill switch for {target_type} {target!r} is already engaged.")
        return cleaned


class ActiveFilter(admin.SimpleListFilter):
    """Engaged or lifted."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Engaged"), ("lifted", "Lifted")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(lifted_at__isnull=True)
        if self.value() == "lifted":
            return queryset.filter(lifted_at__isnull=False)
        return queryset


@admin.register(KillSwitch)
class KillSwitchAdmin(_ReadOnlyChangeMixin, admin.ModelAdmin):
    """Engage (add) and lift (action, with reason) kill switches; both are recorded."""

    form = KillSwitchForm
    list_display = ["target_type", "target", "is_active", "blocks_now", "created_by", "created_at", "lifted_at"]
    list_filter = [ActiveFilter, "target_type"]
    search_fields = ["target", "reason", "created_by"]
    actions = ["lift_selected"]

    @admin.display(boolean=True, description="engaged")
    def is_active(self, obj: KillSwitch) -> bool:
        return obj.active

    @admin.display(description="blocks now")
    def blocks_now(self, obj: KillSwitch) -> str:
        return kill_switch_blocks_now(kill_switch=obj)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return [
                "target_type",
                "target",
                "reason",
                "created_by",
                "created_at",
                "lifted_by",
                "lifted_at",
                "lift_reason",
            ]
        return []

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["target_type", "target", "reason"]
        return self.get_readonly_fields(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        try:
            created = services.kill_switch_engage(
                target_type=data["target_type"], target=data["target"], reason=data["reason"], actor=_actor(request)
            )
            obj.pk = created.pk
            obj._state.adding = False
        except DomainError as exc:
            _service_failed(request, exc)

    def log_addition(self, request, obj, message):
        if not getattr(request, _FAILED, False):
            super().log_addition(request, obj, message)

    def response_add(self, request, obj, post_url_continue=None):
        if getattr(request, _FAILED, False):
            return HttpResponseRedirect(request.path)
        return super().response_add(request, obj, post_url_continue)

    @admin.action(description="Lift selected kill switches (reason required)", permissions=["change"])
    def lift_selected(self, request, queryset):
        actor = _actor(request)
        return _reason_action(
            self,
            request,
            queryset,
            title="Lift kill switches",
            label="Reason for lifting",
            eligible=lambda obj: obj.active,
            apply=lambda obj, text: services.kill_switch_lift(kill_switch=obj, actor=actor, reason=text),
        )


# --- human review queue ------------------------------------------------------------------


class ReviewDecisionForm(forms.Form):
    """A reviewer's decision on one item."""

    decision = forms.ChoiceField(choices=ReviewItem.Decision.choices, widget=forms.RadioSelect)
    corrected_label = forms.CharField(required=False, help_text="Required when overriding: the correct label.")
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 70}), strip=True)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("decision") == ReviewItem.Decision.OVERRIDDEN and not cleaned.get("corrected_label"):
            self.add_error("corrected_label", "An override needs the corrected label.")
        return cleaned


_REVIEW_FACTS = (
    "request_id",
    "instance_index",
    "tenant_slug",
    "key_prefix",
    "status",
    "decision",
    "corrected_label",
    "reviewer",
    "note",
    "reviewed_at",
    "created_at",
)


@admin.register(ReviewItem)
class ReviewItemAdmin(_ReadOnlyChangeMixin, admin.ModelAdmin):
    """The human-oversight queue (EU AI Act Art. 14): one item per flagged instance, decided on its own page."""

    change_list_template = "admin/policy/reviewitem/change_list.html"
    list_display = [
        "created_at",
        "short_request",
        "instance_index",
        "tenant_slug",
        "model_ref",
        "label",
        "confidence",
        "status",
        "decision",
    ]
    list_display_links = ["created_at", "short_request"]
    list_filter = ["status", "decision", "model_name", "tenant_slug"]
    search_fields = ["request_id", "tenant_slug", "model_name"]
    fields = [
        "request_id",
        "instance_index",
        "audit_seq",
        "tenant_slug",
        "key_prefix",
        "model_ref",
        "label",
        "confidence",
        "status",
        "decision",
        "corrected_label",
        "reviewer",
        "note",
        "reviewed_at",
        "created_at",
    ]
    readonly_fields = fields
    actions = None

    # Named model_ref, not model: ModelAdmin.model is the admin's model class and would shadow a method.
    @admin.display(description="model", ordering="model_name")
    def model_ref(self, obj: ReviewItem) -> str:
        return f"{obj.model_name}@{obj.model_version}"

    @admin.display(description="request", ordering="request_id")
    def short_request(self, obj: ReviewItem) -> str:
        short = obj.request_id if len(obj.request_id) <= 14 else obj.request_id[:12] + "…"
        return format_html('<span title="{}">{}</span>', obj.request_id, short)

    @admin.display(description="top probability", ordering="top_probability")
    def confidence(self, obj: ReviewItem) -> str:
        return f"{obj.top_probability:.1%}"

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        # Review items change only through the decision form on their page.
        return

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/decide/", wrap(self.decide_view), name="policy_reviewitem_decide"),
            path("override-rates/", wrap(self.override_rates_view), name="policy_reviewitem_override_rates"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The item's own page: the instance as a person sees it, its facts, and the decision form."""
        item = self.get_object(request, object_id)
        if item is None:
            raise Http404("No such review item.")
        if not self.has_view_or_change_permission(request, item):
            raise PermissionDenied
        return self._item_page(request, item, ReviewDecisionForm(), status=200)

    def _item_page(self, request, item: ReviewItem, form: forms.Form, *, status: int) -> HttpResponse:
        can_decide = self.has_change_permission(request, item) and item.status != ReviewItem.Status.REVIEWED
        context = {
            **self.admin_site.each_context(request),
            **review_item_context(item),
            "title": f"Review {item.model_name}@{item.model_version}, instance #{item.instance_index}",
            "opts": self.model._meta,
            "original": item,
            "facts": [(self.model._meta.get_field(name).verbose_name, getattr(item, name)) for name in _REVIEW_FACTS],
            "decision_form": form if can_decide else None,
        }
        return TemplateResponse(request, "admin/policy/reviewitem/decide.html", context, status=status)

    def decide_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST only: record the decision through the audited service, then back to the item (or the next one)."""
        item = self.get_object(request, object_id)
        if item is None:
            raise Http404("No such review item.")
        if request.method != "POST" or not self.has_change_permission(request, item):
            raise PermissionDenied
        form = ReviewDecisionForm(request.POST)
        if form.is_valid():
            try:
                services.review_item_decide(
                    item=item,
                    actor=_actor(request),
                    decision=form.cleaned_data["decision"],
                    note=form.cleaned_data["note"],
                    corrected_label=form.cleaned_data.get("corrected_label", ""),
                )
            except DomainError as exc:
                form.add_error(None, exc.detail)
            else:
                messages.success(request, f"Decision recorded for {item}.")
                following = ReviewItem.objects.filter(status=ReviewItem.Status.PENDING).order_by("created_at").first()
                target = following.pk if following is not None else item.pk
                return HttpResponseRedirect(reverse("admin:policy_reviewitem_change", args=[target]))
        return self._item_page(request, item, form, status=400)

    def override_rates_view(self, request: HttpRequest) -> HttpResponse:
        """Override rate per model version, optionally for one model (a selector of the registry's names)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        model_name = request.GET.get("model", "").strip()
        names = sorted(set(ReviewItem.objects.values_list("model_name", flat=True)))
        context = {
            **self.admin_site.each_context(request),
            "title": "Review outcomes and override rate per model",
            "opts": self.model._meta,
            "rows": review_override_rates(model_name=model_name or None),
            "names": names,
            "selected": model_name,
        }
        return TemplateResponse(request, "admin/policy/reviewitem/override_rates.html", context)


def _retained_instance(event: AuditEvent, index: int) -> list[float] | None:
    """One instance of the request's input where policy retained it: encrypted outside the record, else none.

    Events written before retained inputs moved out of the sealed record carry
    them in ``raw_input``; a destroyed retention key (crypto-shredding) means the
    input is gone, and the page says only the digest remains.
    """
    from django.core.exceptions import ObjectDoesNotExist

    from audit.services.retained import RetainedInputUnavailable, retained_input_read

    raw: Any = event.raw_input
    reference = (event.detail or {}).get("retained_input") if isinstance(event.detail, dict) else None
    if raw is None and isinstance(reference, dict) and "id" in reference:
        try:
            stored = retained_input_read(retained_id=int(reference["id"]))
        except (RetainedInputUnavailable, ObjectDoesNotExist, ValueError):
            return None
        raw = stored.tolist() if hasattr(stored, "tolist") else None
    if not isinstance(raw, list) or index >= len(raw):
        return None
    row = raw[index]
    # An 8x8 image input arrives as nested rows: the picture wants its 64 values in order.
    flat = np.asarray(row, dtype=float).reshape(-1).tolist() if isinstance(row, list) else None
    return flat


def review_item_context(item: ReviewItem) -> dict[str, Any]:
    """The probability chart and the input as a person sees it (or why only a digest exists)."""
    from django.apps import apps

    version = (
        apps.get_model("inference", "ModelVersion")
        .objects.filter(name=item.model_name, version=item.model_version)
        .first()
    )
    labels = list(version.labels) if version is not None and version.labels else list(range(len(item.probabilities)))
    event = AuditEvent.objects.filter(seq=item.audit_seq).only("raw_input", "input_digest", "detail").first()
    values = _retained_instance(event, item.instance_index) if event is not None else None
    image = None
    if isinstance(values, list):
        image = digit_image_svg(values=values, value_max=version.value_max if version is not None else 16.0)
    return {
        "probability_chart": mark_safe(  # noqa: S308 - every text in it is escaped by probability_chart_svg
            probability_chart_svg(probabilities=item.probabilities, labels=labels, predicted=item.label)
        )
        if item.probabilities
        else None,
        "rounded_probabilities": [f"{float(p):.3f}" for p in item.probabilities],
        "input_image": mark_safe(image) if image else None,  # noqa: S308 - numbers only
        "input_values": values,
        "input_digest": event.input_digest if event is not None else "",
    }
