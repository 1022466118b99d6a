"""The ``compliance officer`` group: read the supervision record, export it, change nothing.

Migration 0004 creates the group with the audit permissions.  Policy
versions and tenant usage belong to apps whose models may be created after
that migration, so :func:`compliance_group_ensure` (run after every
``migrate`` by ``AuditConfig`` and by ``manage.py ensure_compliance_group``)
re-derives the whole permission set from patterns.  Only ``view_*``
permissions plus ``audit.export_auditevent`` are ever granted, whatever the
patterns say, and the set is *replaced*, so a permission to add, change or
delete tenants, keys, plans, policies or models cannot linger on the group.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING

from audit.services.recording import audit_change_record

if TYPE_CHECKING:
    from django.contrib.auth.models import Group

COMPLIANCE_GROUP_NAME = "compliance officer"
EXPORT_PERMISSION = "audit.export_auditevent"

# "app_label.codename" patterns; only view permissions (and the export one) survive.
COMPLIANCE_PERMISSION_PATTERNS: tuple[str, ...] = (
    "audit.view_*",
    EXPORT_PERMISSION,
    "policy.view_*",  # policies, their versions, kill switches and review items (read-only)
    "tenants.view_*usage*",
    "tenants.view_quotacounter",  # usage counters per tenant and window
    "monitoring.view_*",  # post-market monitoring: live windows, monitor results, alerts (read-only)
)


@dataclass(frozen=True)
class ComplianceGroupResult:
    """The group and the permissions it now holds (as ``app_label.codename``)."""

    group: Group
    permissions: tuple[str, ...]
    created: bool


def _allowed(label: str) -> bool:
    codename = label.split(".", 1)[1]
    return codename.startswith("view_") or label == EXPORT_PERMISSION


def compliance_group_ensure(*, using: str = "default", actor: str | None = None) -> ComplianceGroupResult:
    """Create or repair the group so it holds exactly the compliance permissions.

    With ``actor`` (the management command) a change of the permission set is
    audited; the automatic post-migrate repair stays silent.
    """
    # Imported here: services are imported by other apps' modules, possibly
    # while the app registry is still loading.
    from django.contrib.auth.models import Group, Permission

    group, created = Group.objects.using(using).get_or_create(name=COMPLIANCE_GROUP_NAME)
    held = group.permissions.select_related("content_type")
    before = sorted(f"{p.content_type.app_label}.{p.codename}" for p in held)
    permissions = []
    for perm in Permission.objects.using(using).select_related("content_type"):
        label = f"{perm.content_type.app_label}.{perm.codename}"
        if _allowed(label) and any(fnmatch.fnmatchcase(label, p) for p in COMPLIANCE_PERMISSION_PATTERNS):
            permissions.append((label, perm))
    group.permissions.set([perm for _, perm in permissions])
    after = sorted(label for label, _ in permissions)
    if actor and after != before:
        audit_change_record(
            actor=actor, action="group.permissions", target=f"group:{COMPLIANCE_GROUP_NAME}", before=before, after=after
        )
    return ComplianceGroupResult(group=group, permissions=tuple(after), created=created)
