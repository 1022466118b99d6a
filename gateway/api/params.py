"""Request parameters shared by every protocol surface (REST v1, Open Inference Protocol v2, jobs), parsed once.

The version a body names, the declared purpose (``X-Purpose`` header or body
field) and the models a key may see are read here, so that v1, v2 and the
jobs API cannot drift apart in what they accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from core.errors import DomainError, InvalidInput, MalformedRequest, flattened_validation_errors
from core.sanitize import text_require_clean
from inference.selectors import model_catalog_list
from policy.services import policy_models_visible

# The registry stores versions as PositiveIntegerField: a larger number could
# only overflow the database query, so it is refused as input instead.
MAX_VERSION = 2**31 - 1
# Purposes are audited and matched against policy verbatim; longer ones are refused, not truncated.
PURPOSE_MAX_LENGTH = 100
PURPOSE_HEADER = OpenApiParameter(
    "X-Purpose",
    {"type": "string", "maxLength": PURPOSE_MAX_LENGTH},
    OpenApiParameter.HEADER,
    required=False,
    description="Why the prediction is requested; takes precedence over the body's `purpose`.",
)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: DRF's ``IntegerField`` also takes ``"3"``, ``3.0`` and ``True``, which no client means."""

    def to_internal_value(self, data: Any) -> int:
        """The integer itself; strings, floats and booleans are refused."""
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string, kept as sent: DRF's ``CharField`` turns ``5`` into ``"5"`` and strips spaces.

    A NUL or a lone surrogate is valid JSON but cannot be matched, stored or
    logged: 400 ``malformed_request`` (``core.sanitize``), as everywhere else.
    With ``clean_text=False`` the string passes as sent, for values a later
    step answers for itself (a model name no model can have is a 404).
    """

    def __init__(self, *, clean_text: bool = True, **kwargs: Any):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.clean_text = clean_text
        if not clean_text:
            self.validators = [
                v
                for v in self.validators
                if not isinstance(v, ProhibitNullCharactersValidator | ProhibitSurrogateCharactersValidator)
            ]

    def to_internal_value(self, data: Any) -> str:
        """The string itself; anything else is refused."""
        if not isinstance(data, str):
            self.fail("invalid")
        if self.clean_text:
            text_require_clean(data, what=f"'{self.field_name}'")
        return super().to_internal_value(data)


class InstancesField(serializers.ListField):
    """A non-empty list of instances, passed on as sent.

    Each instance's shape, type, finiteness and range is checked against the
    model's signature by the pipeline (``inference.services.inputs_validate``),
    which knows the model; a per-item pass here would cost a JSON encoding of
    every instance and prove less.
    """

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("child", serializers.JSONField())
        kwargs.setdefault("min_length", 1)
        kwargs.setdefault("allow_empty", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[Any]:
        """The list itself, once it is a non-empty JSON array."""
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        if not data:
            self.fail("empty")
        return data


class StrictSerializer(serializers.Serializer):
    """A request body serializer; with ``Meta.reject_unknown_fields`` an undeclared member is an error.

    The OpenAPI schema says so too (``additionalProperties: false``, see
    ``gateway.openapi``), so the document and the check cannot disagree.
    """

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        """Refuse members the serializer does not declare, then validate the declared ones."""
        if isinstance(data, Mapping) and getattr(getattr(self, "Meta", None), "reject_unknown_fields", False):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def params_validated(
    serializer_class: type[serializers.Serializer], data: Any, *, error: type[DomainError] = InvalidInput
) -> dict[str, Any]:
    """``data`` checked by ``serializer_class``.

    Not an object: 400 ``malformed_request``.  Otherwise every problem found,
    as ``error`` (``invalid_input`` for bodies; query strings keep their
    published ``validation_error``), with ``errors`` holding them by field.
    """
    if not isinstance(data, Mapping):
        raise MalformedRequest("The body must be a JSON object.")
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        errors = serializer.errors
        raise error("; ".join(flattened_validation_errors(errors)), errors=errors)
    return dict(serializer.validated_data)


def requested_version(value: object) -> int | None:
    """A version named in a request body: absent, or an integer from 1 to ``MAX_VERSION``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise InvalidInput(f"'version' must be an integer from 1 to {MAX_VERSION}.")
    return value


def requested_purpose(*, header: str | None, body: object) -> str | None:
    """The declared purpose: the ``X-Purpose`` header, else the body's; each at most ``PURPOSE_MAX_LENGTH`` chars.

    Both are checked even when the header wins: an invalid body is an error whatever the headers say.
    """
    for value in (header, body):
        if value is not None and (not isinstance(value, str) or len(value) > PURPOSE_MAX_LENGTH):
            raise InvalidInput(f"'purpose' must be a string of at most {PURPOSE_MAX_LENGTH} characters.")
        if value is not None:
            # A NUL or a lone surrogate is valid JSON but cannot be matched, stored or logged: refused here.
            text_require_clean(value, what="'purpose'")
    return header or (body if isinstance(body, str) else None)


def visible_models(principal: Any) -> list[Any]:
    """The active models this key may call: key allow-list, then the policy decision."""
    catalog = [info for info in model_catalog_list() if principal.permits_model(info.name)]
    facts = {info.name: info.facts() for info in catalog}
    allowed = {f.name for f in policy_models_visible(principal=principal, models=list(facts.values()))}
    return [info for info in catalog if info.name in allowed]
