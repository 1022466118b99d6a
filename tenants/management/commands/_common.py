"""Helpers shared by this app's management commands (not a command: the leading underscore)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.core.management.base import CommandError

from core.errors import DomainError
from tenants.models import ApiKey, Tenant
from tenants.selectors import api_key_lookup

T = TypeVar("T")


def actor_for(command_module: str) -> str:
    """``command:<name>`` for a command module's ``__name__``."""
    return f"command:{command_module.rsplit('.', 1)[-1]}"


def call(service: Callable[..., T], **kwargs: object) -> T:
    """Run a service, turning a domain error into a clean ``CommandError`` (exit status 1)."""
    try:
        return service(**kwargs)
    except DomainError as exc:
        raise CommandError(f"{exc.code}: {exc.detail}") from exc


def tenant_by_slug(slug: str) -> Tenant:
    """The tenant or a ``CommandError``."""
    tenant = Tenant.objects.select_related("plan").filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"No tenant {slug!r}.")
    return tenant


def key_by_prefix(prefix: str) -> ApiKey:
    """The key with ``prefix`` (a full key is accepted too: only its prefix is used) or a ``CommandError``."""
    key = api_key_lookup(prefix=prefix.split(".", 1)[0].strip())
    if key is None:
        raise CommandError(f"No API key with prefix {prefix.split('.', 1)[0]!r}.")
    return key


def limit_value(text: str) -> str | None:
    """``inherit`` (or ``none``) clears an override; anything else is validated by the service."""
    return None if text.strip().lower() in ("inherit", "none", "") else text.strip()
