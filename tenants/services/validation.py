"""Validation, snapshots and cache invalidation shared by the tenant and key services."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db import models, transaction

from core.errors import ValidationFailed
from core.invalidation import KEYS, clock, generation_bump
from tenants.principal import LIMIT_FIELDS

_INT_MINIMUM = {
    "burst": 1,
    "daily_instances": 0,
    "monthly_instances": 0,
    "max_batch": 1,
    "max_body_bytes": 1,
    "max_concurrent_jobs": 0,
    "max_job_instances": 1,
}
_INT_MAXIMUM = 2**31 - 1


def limit_overrides_validate(values: dict[str, object | None]) -> dict[str, object | None]:
    """Check limit values (``None`` = inherit/unlimited) and coerce them; raise ``ValidationFailed``."""
    unknown = set(values) - set(LIMIT_FIELDS)
    if unknown:
        raise ValidationFailed(f"Unknown limit(s): {', '.join(sorted(unknown))}.")
    cleaned: dict[str, object | None] = {}
    for name, value in values.items():
        if value is None:
            cleaned[name] = None
            continue
        if name == "rate_per_second":
            try:
                rate = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                raise ValidationFailed(f"{name} must be a number.") from exc
            if not rate > 0 or rate != rate or rate == float("inf"):
                raise ValidationFailed(f"{name} must be a positive number.")
            cleaned[name] = rate
            continue
        if isinstance(value, bool):
            raise ValidationFailed(f"{name} must be an integer.")
        try:
            number = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError) as exc:
            raise ValidationFailed(f"{name} must be an integer.") from exc
        if isinstance(value, float) and value != number:
            raise ValidationFailed(f"{name} must be an integer.")
        maximum = 2**62 if name in ("daily_instances", "monthly_instances") else _INT_MAXIMUM
        if number < _INT_MINIMUM[name] or number > maximum:
            raise ValidationFailed(f"{name} must be between {_INT_MINIMUM[name]} and {maximum}.")
        cleaned[name] = number
    return cleaned


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, models.Model):
        return str(value)
    return value


def snapshot(instance: models.Model, fields: list[str]) -> dict[str, Any]:
    """JSON-safe values of ``fields`` for an audit record's before/after."""
    return {name: _plain(getattr(instance, name)) for name in fields}


def keys_changed() -> None:
    """Invalidate every process's key cache: bump ``KEYS`` in this transaction.

    Other processes notice within ``INVALIDATION_CHECK_SECONDS``; this process
    re-reads the generations right after the commit, so a command or admin
    action is visible to its own process at once.
    """
    generation_bump(kind=KEYS)
    transaction.on_commit(clock.reset)
