"""Plans and tenants: create, change, suspend, and the demo tenant.

Every write runs in one transaction that also bumps the ``KEYS`` generation
(the cached principals embed tenant status, region, purposes and limits) and
records an audit event with the actor and before/after values, so a change is
either applied, invalidated and recorded, or not at all.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.db import transaction
from django.db.models import ProtectedError

from audit.services import audit_change_record
from core.errors import Conflict, DomainError, ValidationFailed
from tenants.errors import TenantSuspended
from tenants.keyformat import key_parse
from tenants.models import Plan, Tenant
from tenants.principal import ALL_SCOPES, LIMIT_FIELDS
from tenants.services.keys import api_key_authenticate, api_key_create
from tenants.services.validation import keys_changed, limit_overrides_validate, snapshot

STANDARD_PLAN = "standard"
#: Generous defaults for the demo and for tenants created without a plan.
STANDARD_LIMITS: dict[str, object] = {
    "rate_per_second": 200.0,
    "burst": 400,
    "daily_instances": 1_000_000,
    "monthly_instances": 20_000_000,
    "max_batch": 1024,
    "max_body_bytes": 8 * 1024 * 1024,
    "max_concurrent_jobs": 4,
    "max_job_instances": 1_000_000,
}
DEMO_SLUG = "demo"
DEMO_PURPOSES = ["research", "evaluation", "demo"]

_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_REGION_RE = re.compile(r"^[a-z]{2,16}$")
_PURPOSE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
PLAN_FIELDS = ["name", "description", *LIMIT_FIELDS]
TENANT_FIELDS = [
    "slug",
    "name",
    "status",
    "suspended_reason",
    "region",
    "identity_verified",
    "verified_by",
    "verified_at",
    "approved_purposes",
    "contact",
    "plan",
    *LIMIT_FIELDS,
]


def plan_snapshot(plan: Plan) -> dict:
    """The audit view of a plan."""
    return snapshot(plan, PLAN_FIELDS)


def tenant_snapshot(tenant: Tenant) -> dict:
    """The audit view of a tenant."""
    return snapshot(tenant, TENANT_FIELDS)


def _purposes_validate(purposes: object) -> list[str]:
    if purposes is None:
        return []
    if not isinstance(purposes, list | tuple):
        raise ValidationFailed("approved_purposes must be a list of strings.")
    cleaned = []
    for purpose in purposes:
        text = str(purpose).strip().lower()
        if not _PURPOSE_RE.match(text):
            raise ValidationFailed(f"Invalid purpose {purpose!r}: lowercase letters, digits, '-', '_', '.'.")
        if text not in cleaned:
            cleaned.append(text)
    return cleaned


# --- plans -------------------------------------------------------------------------------
def plan_save(*, plan: Plan, actor: str) -> Plan:
    """Create or change a plan (audited); every tenant on it sees the new limits within a second."""
    limit_overrides_validate({name: getattr(plan, name) for name in LIMIT_FIELDS if getattr(plan, name) is not None})
    with transaction.atomic():
        before = None
        if plan.pk is not None:
            stored = Plan.objects.select_for_update().filter(pk=plan.pk).first()
            before = plan_snapshot(stored) if stored else None
        plan.full_clean()
        plan.save()
        after = plan_snapshot(plan)
        if after != before:
            keys_changed()
            audit_change_record(
                actor=actor,
                action="plan.create" if before is None else "plan.update",
                target=f"plan:{plan.name}",
                before=before,
                after=after,
            )
    return plan


def plan_delete(*, plan: Plan, actor: str) -> None:
    """Delete a plan no tenant uses (``Conflict`` otherwise)."""
    with transaction.atomic():
        before = plan_snapshot(plan)
        try:
            plan.delete()
        except ProtectedError as exc:
            raise Conflict(f"Plan {plan.name!r} is in use by tenants; move them first.") from exc
        keys_changed()
        audit_change_record(actor=actor, action="plan.delete", target=f"plan:{before['name']}", before=before)


def plan_standard_ensure(*, actor: str) -> Plan:
    """The ``standard`` plan, created with generous limits when missing (never changed when present)."""
    plan = Plan.objects.filter(name=STANDARD_PLAN).first()
    if plan is not None:
        return plan
    return plan_save(plan=Plan(name=STANDARD_PLAN, description="Generous default plan", **STANDARD_LIMITS), actor=actor)


# --- tenants ------------------------------------------------------------------------------
def tenant_create(
    *,
    slug: str,
    actor: str,
    name: str = "",
    region: str = "eu",
    plan: Plan | None = None,
    identity_verified: bool = False,
    approved_purposes: list[str] | None = None,
    contact: str = "",
) -> Tenant:
    """Create an active tenant on ``plan`` (the standard plan by default)."""
    tenant = Tenant(
        slug=slug,
        name=name or slug,
        region=region,
        plan=plan or plan_standard_ensure(actor=actor),
        identity_verified=identity_verified,
        approved_purposes=approved_purposes or [],
        contact=contact,
    )
    return tenant_save(tenant=tenant, actor=actor)


def tenant_validate(*, tenant: Tenant) -> None:
    """Raise ``ValidationFailed`` when ``tenant`` breaks a rule every writer must respect (admin forms call it too)."""
    if not _SLUG_RE.match(tenant.slug or ""):
        raise ValidationFailed("A tenant slug is 1-64 lowercase letters, digits and inner hyphens.")
    if not _REGION_RE.match(tenant.region or ""):
        raise ValidationFailed("A region is a lowercase code such as cn, eu or us.")
    _purposes_validate(tenant.approved_purposes)
    limit_overrides_validate({name: getattr(tenant, name) for name in LIMIT_FIELDS})
    if tenant.status == Tenant.Status.SUSPENDED and not (tenant.suspended_reason or "").strip():
        raise ValidationFailed("A suspension needs a reason.")


def tenant_save(*, tenant: Tenant, actor: str, action: str | None = None, reason: str = "") -> Tenant:
    """Create or change ``tenant`` (commands, admin forms) in one audited, cache-invalidating transaction.

    The slug cannot change; a suspension needs a reason; verifying identity
    stamps who and when (clearing the flag clears them).  ``reason`` goes to
    the audit record.
    """
    tenant_validate(tenant=tenant)
    tenant.approved_purposes = _purposes_validate(tenant.approved_purposes)
    if tenant.status == Tenant.Status.ACTIVE:
        tenant.suspended_reason = ""
    with transaction.atomic():
        stored = None
        if tenant.pk is not None:
            stored = Tenant.objects.select_for_update().select_related("plan").get(pk=tenant.pk)
            if stored.slug != tenant.slug:
                raise ValidationFailed("A tenant's slug cannot change: audit records and policies refer to it.")
        elif Tenant.objects.filter(slug=tenant.slug).exists():
            raise Conflict(f"Tenant {tenant.slug!r} already exists.")
        was_verified = stored.identity_verified if stored is not None else False
        if tenant.identity_verified and not was_verified:
            tenant.verified_by = tenant.verified_by or actor
            tenant.verified_at = tenant.verified_at or datetime.now(UTC)
        elif not tenant.identity_verified:
            tenant.verified_by, tenant.verified_at = "", None
        before = tenant_snapshot(stored) if stored is not None else None
        tenant.full_clean()
        tenant.save()
        after = tenant_snapshot(tenant)
        if after != before:
            keys_changed()
            audit_change_record(
                actor=actor,
                action=action or ("tenant.create" if stored is None else "tenant.update"),
                target=f"tenant:{tenant.slug}",
                before=before,
                after=after,
                tenant_id=tenant.pk,
                tenant_slug=tenant.slug,
                extra={"reason": reason} if reason else None,
            )
    return tenant


def tenant_quota_set(*, tenant: Tenant, actor: str, overrides: dict[str, object | None]) -> Tenant:
    """Set (or with ``None`` clear) the tenant's limit overrides named in ``overrides``."""
    cleaned = limit_overrides_validate(overrides)
    fresh = Tenant.objects.select_related("plan").get(pk=tenant.pk)
    for name, value in cleaned.items():
        setattr(fresh, name, value)
    return tenant_save(tenant=fresh, actor=actor, action="tenant.quota_set")


def tenant_suspend(*, tenant: Tenant, reason: str, actor: str) -> Tenant:
    """Suspend: every key of the tenant is refused (403 ``tenant_suspended``) within about a second."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("A suspension needs a reason.")
    fresh = Tenant.objects.select_related("plan").get(pk=tenant.pk)
    fresh.status = Tenant.Status.SUSPENDED
    fresh.suspended_reason = reason[:500]
    return tenant_save(tenant=fresh, actor=actor, action="tenant.suspend", reason=reason[:500])


def tenant_unsuspend(*, tenant: Tenant, reason: str, actor: str) -> Tenant:
    """Lift a suspension; the reason goes to the audit record.  No-op for an active tenant."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Lifting a suspension needs a reason.")
    fresh = Tenant.objects.select_related("plan").get(pk=tenant.pk)
    if fresh.status == Tenant.Status.ACTIVE:
        return fresh
    fresh.status = Tenant.Status.ACTIVE
    return tenant_save(tenant=fresh, actor=actor, action="tenant.unsuspend", reason=reason[:500])


# --- the demo tenant ------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoTenant:
    """The demo tenant and a working key for it (``key_created`` when a new one was issued)."""

    tenant: Tenant
    raw_key: str
    key_created: bool


def demo_tenant_ensure(*, actor: str, key_file: Path) -> DemoTenant:
    """Make sure the demo tenant exists and ``key_file`` holds a key that authenticates (idempotent).

    A stored key that still works is reused; otherwise (missing file, revoked,
    expired, rotated out, another database) a new key with every scope is
    issued and written to ``key_file`` with mode 0600.  A suspended demo
    tenant stays suspended (check ``tenant.is_active``).
    """
    plan = plan_standard_ensure(actor=actor)
    tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
    if tenant is None:
        tenant = tenant_create(
            slug=DEMO_SLUG,
            actor=actor,
            name="Demo tenant",
            region="eu",
            plan=plan,
            identity_verified=True,
            approved_purposes=DEMO_PURPOSES,
            contact="demo@example.invalid",
        )
    stored = _read_key_file(key_file)
    if stored is not None:
        try:
            principal = api_key_authenticate(raw_key=stored)
        except TenantSuspended:
            # The key is fine; a suspension is an operator's decision that a
            # setup command must not undo.  The caller reports it.
            return DemoTenant(tenant=tenant, raw_key=stored, key_created=False)
        except DomainError:  # revoked, expired, rotated out, unknown here: issue a new one
            principal = None
        if principal is not None and principal.tenant_id == tenant.pk:
            return DemoTenant(tenant=tenant, raw_key=stored, key_created=False)
    issued = api_key_create(tenant=tenant, actor=actor, name="demo", scopes=list(ALL_SCOPES))
    _write_key_file(key_file, issued.raw_key)
    return DemoTenant(tenant=tenant, raw_key=issued.raw_key, key_created=True)


def _read_key_file(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text if key_parse(text) is not None else None


def _write_key_file(path: Path, raw_key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(raw_key + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
