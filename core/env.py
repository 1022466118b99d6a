"""The one place where the gateway reads its environment.

Every setting that varies by deployment comes through these helpers, so the
configuration table in the README can be checked against a single module.
A production deployment (``DJANGO_ENV=production``) that lacks a required
secret fails at start-up with a message naming the variable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MAAS_VAR_DIR", BASE_DIR / "var")).resolve()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    """Return the variable as a string, or ``default`` when unset."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    """Parse a boolean variable; anything unrecognised is a configuration error."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    """Parse an integer variable with a clear error on bad input."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    """Parse a float variable with a clear error on bad input."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Parse a comma-separated list variable."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def is_production() -> bool:
    """True when ``DJANGO_ENV=production``: secrets must then come from the environment."""
    return env_str("DJANGO_ENV", "development").lower() == "production"


def secret_from_env_or_file(name: str, filename: str, nbytes: int = 32) -> str:
    """Return a secret from ``name``; in the embedded run generate it once into ``var/``.

    In production a missing secret is fatal, so a misconfigured replica never
    starts with a key that differs from its siblings.
    """
    value = os.environ.get(name)
    if value:
        return value
    if is_production():
        raise ImproperlyConfigured(f"{name} must be set when DJANGO_ENV=production")
    path = VAR_DIR / filename
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    generated = secrets.token_urlsafe(nbytes)
    # O_EXCL: several workers may start at once; the first writer wins and the
    # others read its value, so every process shares one secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(generated)
    return generated
