"""Admin actions that ask first: a confirmation page with warnings and a required reason.

Used for consequential changes (activating or retiring a model version and the
like): the first POST of the action renders the page, the second (with
``apply`` and the reason) performs it through the audited service, passing
the reason along so it is written to the audit trail with the actor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from core.errors import DomainError


class ReasonForm(forms.Form):
    """The one required field of a confirmation: why."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        strip=True,
        help_text="Required; kept in the audit trail with your name.",
    )


def confirm_with_reason(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    rows: Sequence[Any],
    *,
    title: str,
    explanation: str,
    apply: Callable[[Any, str], str],
    warnings: Sequence[str] = (),
) -> HttpResponse | None:
    """Render the confirmation for ``rows``, or (on the confirming POST) call ``apply(row, reason)`` for each.

    ``apply`` returns the success message of one row; a ``DomainError`` is shown as that row's error.
    """
    return confirm_with_form(
        modeladmin,
        request,
        rows,
        title=title,
        explanation=explanation,
        apply=lambda row, data: apply(row, data["reason"]),
        warnings=warnings,
    )


def confirm_with_form(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    rows: Sequence[Any],
    *,
    title: str,
    explanation: str,
    apply: Callable[[Any, dict[str, Any]], str],
    form_class: type[forms.Form] = ReasonForm,
    warnings: Sequence[str] = (),
) -> HttpResponse | None:
    """Like :func:`confirm_with_reason` with any form: ``apply(row, cleaned_data)`` on the confirming POST."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        for row in rows:
            try:
                modeladmin.message_user(request, apply(row, form.cleaned_data), messages.SUCCESS)
            except DomainError as exc:
                modeladmin.message_user(request, f"{row}: {exc.detail}", messages.ERROR)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "explanation": explanation,
        "warnings": list(warnings),
        "rows": rows,
        "form": form,
        "action": request.POST.get("action"),
        "opts": modeladmin.model._meta,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/confirm_with_reason.html", context)
