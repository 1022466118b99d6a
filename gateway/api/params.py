"""Request parameters shared by every protocol surface (REST v1, Open Inference Protocol v2, jobs), parsed once.

The version a body names, the declared purpose (``X-Purpose`` header or body
field) and the models a key may see are read here, so that v1, v2 and the
jobs API cannot drift apart in what they accept.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter

from core.errors import InvalidInput
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
