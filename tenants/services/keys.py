"""API keys: issue, authenticate, revoke, rotate.

Authentication is on every request's hot path, so it is built to cost
microseconds on a cache hit: the key's stored hash, status and ready-made
``Principal`` are cached per process by the lookup prefix (``LocalCache`` of
kind ``KEYS``), and only the HMAC of the presented key is computed per request
(a few microseconds; a slow password hasher would cost milliseconds and buy
nothing for a 256-bit random secret).  Every write that changes what the cache
holds (a key, its tenant, its plan, an override) bumps the ``KEYS`` generation
inside its transaction, so revocation and suspension reach every process
within ``INVALIDATION_CHECK_SECONDS`` (1 s) plus one request.  Expiry and the
rotation grace period are compared with the clock on every request, so they
take effect to the second without any invalidation.

``last_used_at`` is written at most once a minute per key and process, and
the conditional ``UPDATE`` (``WHERE last_used_at < now - 60 s``) keeps it near
once a minute per key across processes: never a write per request.

The raw key exists only in the return value of ``api_key_create`` /
``api_key_rotate`` and in the request being authenticated; logs and audit
records name keys by prefix.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q

from audit.models import AuditEvent
from audit.services import audit_change_record
from core.errors import (
    AuthenticationError,
    AuthenticationThrottled,
    Conflict,
    DatabaseUnavailable,
    InvalidApiKey,
    MissingApiKey,
    ValidationFailed,
)
from core.invalidation import KEYS, LocalCache
from tenants.errors import ApiKeyExpired, ApiKeyRevoked, InsufficientScope, TenantSuspended
from tenants.keyformat import (
    key_compose,
    key_hash,
    key_hash_matches,
    key_parse,
    key_prefix_generate,
    key_secret_generate,
)
from tenants.models import ApiKey, Tenant
from tenants.principal import ALL_SCOPES, LIMIT_FIELDS, Principal
from tenants.services.auth_failures import auth_failure_count
from tenants.services.validation import keys_changed, limit_overrides_validate, snapshot

logger = logging.getLogger("tenants.keys")

LAST_USED_INTERVAL_SECONDS = 60.0
KEY_EVENT = AuditEvent.Type.KEY_LIFECYCLE


@dataclass(frozen=True)
class IssuedApiKey:
    """A key just created: ``raw_key`` is shown to its owner once and never stored."""

    key: ApiKey
    raw_key: str


@dataclass(frozen=True)
class _CachedKey:
    """What a process remembers about one prefix (``principal`` is ``None`` for an unknown prefix)."""

    key_id: int
    key_hash: str
    revoked: bool
    expires_at: float | None
    grace_until: float | None
    tenant_active: bool
    principal: Principal | None


_UNKNOWN = _CachedKey(0, "", False, None, None, False, None)
# Large enough for every key of a big installation; an attacker spraying random
# prefixes only ever costs one indexed query per prefix and process.
_cache: LocalCache[_CachedKey] = LocalCache(KEYS, max_entries=100_000)
_last_touched: dict[int, float] = {}


# --- the hot path -------------------------------------------------------------------
def api_key_from_headers(*, authorization: str | None, x_api_key: str | None) -> str | None:
    """The presented key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; ``None`` if neither.

    An ``Authorization`` header with another scheme (or an empty bearer token)
    is returned as is, so that authentication answers ``invalid_api_key``
    rather than pretending no credential was sent.  Two different keys in the
    two headers raise ``InvalidApiKey``: the gateway will not guess which one
    the client meant.
    """
    from_authorization: str | None = None
    if authorization is not None and authorization.strip():
        scheme, _, token = authorization.strip().partition(" ")
        from_authorization = token.strip() if scheme.lower() == "bearer" else authorization.strip()
    from_header = x_api_key.strip() if x_api_key is not None and x_api_key.strip() else None
    if (
        from_authorization is not None
        and from_header is not None
        and not hmac.compare_digest(from_authorization.encode(), from_header.encode())
    ):
        raise InvalidApiKey("Two different API keys were sent (Authorization and X-API-Key); send one.")
    return from_authorization if from_authorization is not None else from_header


def api_key_authenticate(*, raw_key: str | None) -> Principal:
    """The ``Principal`` of a valid key of an active tenant, or a 401/403 domain error.

    ``MissingApiKey`` (no key), ``InvalidApiKey`` (malformed, unknown or wrong
    secret), ``ApiKeyRevoked``, ``ApiKeyExpired`` (past expiry, or past the
    grace period of a rotation), ``TenantSuspended`` (403).  The secret is
    checked before any status is revealed, so a prefix alone tells nothing.
    """
    if raw_key is None:
        raise MissingApiKey("Send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.")
    parsed = key_parse(raw_key.strip())
    if parsed is None:
        raise InvalidApiKey("The API key is malformed.")
    try:
        entry = _cache.get_or_load(parsed.prefix, lambda: _load(parsed.prefix))
    except DatabaseError as exc:
        raise DatabaseUnavailable("API keys cannot be checked right now.") from exc
    # Hashed and compared even for an unknown prefix, so timing does not tell known prefixes apart.
    matches = key_hash_matches(parsed.raw, settings.API_KEY_PEPPER, entry.key_hash or "0" * 64)
    if not matches or entry.principal is None:
        raise InvalidApiKey("The API key is not valid.")
    now = time.time()
    if entry.revoked:
        raise ApiKeyRevoked("This API key has been revoked.")
    if entry.expires_at is not None and now >= entry.expires_at:
        raise ApiKeyExpired("This API key has expired.")
    if entry.grace_until is not None and now >= entry.grace_until:
        raise ApiKeyExpired("This API key was rotated and its grace period has ended; use its successor.")
    if not entry.tenant_active:
        raise TenantSuspended("The tenant of this API key is suspended.")
    _touch(entry.key_id, now)
    return entry.principal


def api_key_authenticate_request(*, meta: Mapping[str, str]) -> Principal:
    """The ``Principal`` of the key a request presents, or a 401/403 domain error.

    ``meta`` is the request's WSGI environ (``request.META``): the key is read
    from ``HTTP_AUTHORIZATION`` (``Bearer <key>``) or ``HTTP_X_API_KEY``, as
    ``api_key_from_headers`` explains, then checked by ``api_key_authenticate``.
    The DRF authentication class and the inference pipeline both call this, so
    every endpoint reads credentials the same way.  Setting the log context is
    left to the caller, which owns the request's lifecycle.
    """
    try:
        raw_key = api_key_from_headers(
            authorization=meta.get("HTTP_AUTHORIZATION"), x_api_key=meta.get("HTTP_X_API_KEY")
        )
        return api_key_authenticate(raw_key=raw_key)
    except AuthenticationError as exc:
        # Counted per client address: past the limit 429, past the verbatim count aggregated in the audit trail.
        count = auth_failure_count(client_ip=meta.get("REMOTE_ADDR"))
        if count.throttled:
            throttled = AuthenticationThrottled(
                "Too many failed authentications from this address; retry later.",
                headers={"Retry-After": str(count.retry_after)},
            )
            throttled.audit_verbatim = count.verbatim  # type: ignore[attr-defined]
            raise throttled from None
        exc.audit_verbatim = count.verbatim  # type: ignore[attr-defined]
        raise


def principal_require_scope(*, principal: Principal, scope: str) -> None:
    """Raise ``InsufficientScope`` (403, naming ``required_scope``) unless the key was granted ``scope``."""
    if not principal.has_scope(scope):
        raise InsufficientScope(f"This API key lacks the {scope!r} scope.", required_scope=scope)


def api_key_cache_clear() -> None:
    """Drop this process's cached keys (tests, benchmarks)."""
    _cache.clear()
    _last_touched.clear()


def _load(prefix: str) -> _CachedKey:
    from tenants.selectors import api_key_lookup, principal_for_key

    key = api_key_lookup(prefix=prefix)
    if key is None:
        return _UNKNOWN
    return _CachedKey(
        key_id=key.pk,
        key_hash=key.key_hash,
        revoked=key.revoked,
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
        grace_until=key.grace_until.timestamp() if key.grace_until else None,
        tenant_active=key.tenant.is_active,
        principal=principal_for_key(key=key),
    )


def _touch(key_id: int, now: float) -> None:
    last = _last_touched.get(key_id)
    if last is not None and now - last < LAST_USED_INTERVAL_SECONDS:
        return
    _last_touched[key_id] = now
    stamp = datetime.fromtimestamp(now, UTC)
    try:
        ApiKey.objects.filter(pk=key_id).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=stamp - timedelta(seconds=LAST_USED_INTERVAL_SECONDS))
        ).update(last_used_at=stamp)
    except DatabaseError as exc:
        # Bookkeeping only: a busy database must not fail the request.
        logger.warning("last_used_at update failed", extra={"error": str(exc)})


# --- writes --------------------------------------------------------------------------
def _scopes_validate(scopes: list[str] | tuple[str, ...] | None) -> list[str]:
    if scopes is None:
        return list(ALL_SCOPES)
    cleaned = sorted({str(s).strip() for s in scopes if str(s).strip()})
    unknown = [s for s in cleaned if s not in ALL_SCOPES]
    if unknown:
        raise ValidationFailed(f"Unknown scope(s) {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}.")
    return cleaned


def models_validate(models: list[str] | tuple[str, ...] | None) -> list[str]:
    """Normalise an allowed-models list (sorted, unique) or raise ``ValidationFailed``."""
    cleaned = sorted({str(m).strip() for m in models or () if str(m).strip()})
    for name in cleaned:
        if len(name) > 100 or not all(c.isalnum() or c in "-_." for c in name):
            raise ValidationFailed(f"Invalid model name {name!r}.")
    return cleaned


def key_snapshot(key: ApiKey) -> dict:
    """The audit view of a key: everything but the hash (and the secret, which is never stored)."""
    return snapshot(
        key,
        [
            "prefix",
            "name",
            "scopes",
            "allowed_models",
            "expires_at",
            "revoked",
            "revoked_reason",
            "revoked_at",
            "grace_until",
            "lineage_id",
            "created_by",
            *LIMIT_FIELDS,
        ],
    )


def _audit(*, actor: str, action: str, key: ApiKey, before: dict | None, after: dict | None, **extra) -> None:
    audit_change_record(
        actor=actor,
        action=action,
        target=f"api_key:{key.prefix}",
        before=before,
        after=after,
        tenant_id=key.tenant_id,
        tenant_slug=key.tenant.slug,
        event_type=KEY_EVENT,
        extra={"key_prefix": key.prefix, **extra} if extra else {"key_prefix": key.prefix},
    )


def api_key_create(
    *,
    tenant: Tenant,
    actor: str,
    name: str = "default",
    scopes: list[str] | tuple[str, ...] | None = None,
    allowed_models: list[str] | tuple[str, ...] | None = None,
    expires_at: datetime | None = None,
    overrides: dict[str, object | None] | None = None,
    rotated_from: ApiKey | None = None,
) -> IssuedApiKey:
    """Issue a key for ``tenant``; the returned ``raw_key`` is the only copy of the secret.

    ``scopes`` ``None`` grants every scope; ``allowed_models`` empty means any
    of the tenant's models; ``overrides`` are per-key limits (``None`` = inherit).
    """
    clean_scopes = _scopes_validate(scopes)
    clean_models = models_validate(allowed_models)
    clean_overrides = limit_overrides_validate(overrides or {})
    if not name or len(name) > 100:
        raise ValidationFailed("A key name is 1-100 characters.")
    pepper = settings.API_KEY_PEPPER
    with transaction.atomic():
        for _ in range(5):
            prefix = key_prefix_generate(settings.API_KEY_PRODUCT_PREFIX)
            raw = key_compose(prefix, key_secret_generate())
            try:
                with transaction.atomic():
                    key = ApiKey.objects.create(
                        tenant=tenant,
                        name=name,
                        prefix=prefix,
                        key_hash=key_hash(raw, pepper),
                        scopes=clean_scopes,
                        allowed_models=clean_models,
                        expires_at=expires_at,
                        rotated_from=rotated_from,
                        created_by=actor,
                        **clean_overrides,
                    )
                break
            except IntegrityError:
                # A prefix collision (about 2^-59 per pair): draw again.
                continue
        else:
            raise Conflict("Could not allocate a unique key prefix; try again.")
        key.lineage_id = (rotated_from.lineage_id or rotated_from.pk) if rotated_from else key.pk
        key.save(update_fields=["lineage_id"])
        keys_changed()
        _audit(
            actor=actor,
            action="api_key.rotate" if rotated_from else "api_key.create",
            key=key,
            before=None,
            after=key_snapshot(key),
            **({"rotated_from": rotated_from.prefix} if rotated_from else {}),
        )
    return IssuedApiKey(key=key, raw_key=raw)


def api_key_revoke(*, key: ApiKey, reason: str, actor: str) -> ApiKey:
    """Revoke ``key`` at once (every process refuses it within about a second); idempotent."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("A revocation needs a reason.")
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().select_related("tenant").get(pk=key.pk)
        if locked.revoked:
            return locked
        before = key_snapshot(locked)
        locked.revoked = True
        locked.revoked_reason = reason[:500]
        locked.revoked_at = datetime.now(UTC)
        locked.save(update_fields=["revoked", "revoked_reason", "revoked_at"])
        keys_changed()
        _audit(actor=actor, action="api_key.revoke", key=locked, before=before, after=key_snapshot(locked))
    return locked


def api_key_rotate(*, key: ApiKey, actor: str, grace_hours: float | None = None, reason: str = "") -> IssuedApiKey:
    """Issue a successor with the same tenant, name, scopes, models, expiry and overrides.

    The old key keeps working until ``grace_until`` (now + ``grace_hours``,
    default ``API_KEY_ROTATION_GRACE_HOURS``; 0 ends it at once), then answers
    ``api_key_expired``.  A revoked, expired or already rotated key cannot be
    rotated (``Conflict``): rotation must never revive a key.  ``reason``, when
    given, is kept in the audit record.
    """
    hours = settings.API_KEY_ROTATION_GRACE_HOURS if grace_hours is None else grace_hours
    if hours < 0:
        raise ValidationFailed("The grace period cannot be negative.")
    now = datetime.now(UTC)
    with transaction.atomic():
        old = ApiKey.objects.select_for_update().select_related("tenant").get(pk=key.pk)
        if old.revoked:
            raise Conflict(f"Key {old.prefix} is revoked; issue a new key instead.")
        if old.expires_at is not None and old.expires_at <= now:
            raise Conflict(f"Key {old.prefix} has expired; issue a new key instead.")
        if old.grace_until is not None:
            raise Conflict(f"Key {old.prefix} was already rotated; rotate its successor.")
        before = key_snapshot(old)
        old.grace_until = now + timedelta(hours=hours)
        old.save(update_fields=["grace_until"])
        issued = api_key_create(
            tenant=old.tenant,
            actor=actor,
            name=old.name,
            scopes=old.scopes,
            allowed_models=old.allowed_models,
            expires_at=old.expires_at,
            overrides=old.override_values(),
            rotated_from=old,
        )
        _audit(
            actor=actor,
            action="api_key.rotate_out",
            key=old,
            before=before,
            after=key_snapshot(old),
            successor=issued.key.prefix,
            **({"reason": reason.strip()[:500]} if reason.strip() else {}),
        )
    return issued


def api_key_update(*, key: ApiKey, actor: str, **changes: object) -> ApiKey:
    """Change a key's name, scopes, allowed models, expiry or limit overrides (audited, cache-invalidating)."""
    editable = {"name", "scopes", "allowed_models", "expires_at", *LIMIT_FIELDS}
    unknown = set(changes) - editable
    if unknown:
        raise ValidationFailed(f"Cannot change {', '.join(sorted(unknown))} of a key.")
    if "scopes" in changes:
        changes["scopes"] = _scopes_validate(changes["scopes"])  # type: ignore[arg-type]
    if "allowed_models" in changes:
        changes["allowed_models"] = models_validate(changes["allowed_models"])  # type: ignore[arg-type]
    overrides = limit_overrides_validate({k: v for k, v in changes.items() if k in LIMIT_FIELDS})
    changes.update(overrides)
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().select_related("tenant").get(pk=key.pk)
        before = key_snapshot(locked)
        for field_name, value in changes.items():
            setattr(locked, field_name, value)
        locked.full_clean(exclude=["tenant", "prefix", "key_hash", "rotated_from"])
        locked.save()
        after = key_snapshot(locked)
        if after != before:
            keys_changed()
            _audit(actor=actor, action="api_key.update", key=locked, before=before, after=after)
    return locked
