"""Reads of the policy app: the compiled per-process state, versions, exports.

:func:`policy_set_get` is the hot-path read.  It serves the compiled
:class:`~policy.evaluator.PolicySet` from a per-process ``LocalCache`` that
dies within about a second of any policy or kill-switch change anywhere
(``generation_bump(kind=POLICY)``).  When the state cannot be (re)loaded --
the database is down, or a stored rule no longer compiles -- it raises
``PolicyUnavailable``: the gateway fails closed, never open.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import Error as DatabaseLayerError
from django.db.models import QuerySet
from django.utils import timezone

from core.invalidation import POLICY, LocalCache
from policy.documents import FORMAT, iso
from policy.errors import PolicyUnavailable
from policy.evaluator import PolicySet, PolicySpec, compile_policy_set
from policy.models import KillSwitch, Policy, PolicyVersion
from policy.rules import RuleError

logger = logging.getLogger("policy")

_state: LocalCache[PolicySet] = LocalCache(POLICY, max_entries=4)
_STATE_KEY = "policy_set"


def _policy_set_load() -> PolicySet:
    """Read every enabled policy's current version and every active kill switch, then compile."""
    policies = Policy.objects.filter(enabled=True, current_version__isnull=False).select_related("current_version")
    specs = [
        PolicySpec(
            name=p.name,
            scope=p.scope,
            target=p.target,
            version=p.current_version.number,
            rules=p.current_version.document,
            enabled=p.enabled,
            effective_from=p.effective_from,
            effective_until=p.effective_until,
        )
        for p in policies
    ]
    switches = list(KillSwitch.objects.filter(lifted_at__isnull=True).values_list("target_type", "target"))
    return compile_policy_set(specs, switches)


def policy_set_get() -> PolicySet:
    """The compiled policy state of this process; raises ``PolicyUnavailable`` if it cannot load."""
    try:
        return _state.get_or_load(_STATE_KEY, _policy_set_load)
    except DatabaseLayerError as exc:
        # DatabaseError and InterfaceError alike (a closed or refused connection).
        logger.error("policy state could not be loaded", extra={"error": str(exc)})
        raise PolicyUnavailable("Policy state could not be loaded; the request was not served.") from exc
    except RuleError as exc:
        # Validation refuses such rules on save; this guards against rows
        # written around it (raw SQL, an older validator).  Fail closed.
        logger.error("stored policy cannot be compiled", extra={"error": str(exc)})
        raise PolicyUnavailable("Policy state could not be compiled; the request was not served.") from exc


def policy_state_cache_clear() -> None:
    """Drop this process's compiled state (tests; the generation bump does it in production)."""
    _state.clear()


def policy_list() -> QuerySet[Policy]:
    """Every policy (enabled or not), with current versions, in a stable order."""
    return Policy.objects.select_related("current_version").order_by("name")


def policy_versions_by_labels(*, labels: list[str]) -> dict[str, PolicyVersion | None]:
    """Resolve ``name@number`` labels (as decisions record them) to stored versions."""
    out: dict[str, PolicyVersion | None] = {}
    for label in labels:
        name, _, number = label.rpartition("@")
        version = None
        if name and number.isdigit():
            version = (
                PolicyVersion.objects.select_related("policy").filter(policy__name=name, number=int(number)).first()
            )
        out[label] = version
    return out


def split_version_set(value: str) -> list[str]:
    """``"baseline@3,tenant:demo@1"`` -> ``["baseline@3", "tenant:demo@1"]``."""
    return [part for part in (value or "").split(",") if part]


def policy_export() -> dict[str, Any]:
    """Every policy's current version as an export document (see ``policy.documents``)."""
    policies = []
    for policy in policy_list():
        if policy.current_version is None:
            continue
        entry: dict[str, Any] = {"name": policy.name, "scope": policy.scope}
        if policy.scope == Policy.Scope.TENANT:
            entry["tenant_slug"] = policy.tenant_slug
        if policy.scope == Policy.Scope.MODEL:
            entry["model_name"] = policy.model_name
        entry.update(
            {
                "enabled": policy.enabled,
                "effective_from": iso(policy.effective_from),
                "effective_until": iso(policy.effective_until),
                "version": policy.current_version.number,
                "rules": policy.current_version.document,
            }
        )
        policies.append(entry)
    return {"format": FORMAT, "exported_at": iso(timezone.now()), "policies": policies}


def request_decisions_get(*, request_id: str) -> list[dict[str, Any]]:
    """The recorded decisions for one request id, each with the policy versions that decided it.

    Reads the audit trail (``audit``), which is the durable record of
    what was decided; versions are resolved so a reviewer can open the exact
    rules that were in force.
    """
    from audit.models import AuditEvent

    request_id = (request_id or "").strip()
    if not request_id:
        return []
    events = AuditEvent.objects.filter(request_id=request_id).order_by("seq")[:50]
    out = []
    for event in events:
        labels = split_version_set(event.policy_versions)
        out.append({"event": event, "versions": list(policy_versions_by_labels(labels=labels).items())})
    return out


def review_override_rates(*, model_name: str | None = None) -> list[dict[str, Any]]:
    """Per model version: decided items, overrides, escalations, pending, and the override rate (for monitoring)."""
    from django.db.models import Count, Q

    from policy.models import ReviewItem

    rows = ReviewItem.objects.all()
    if model_name:
        rows = rows.filter(model_name=model_name)
    grouped = (
        rows.values("model_name", "model_version")
        .annotate(
            decided=Count("pk", filter=Q(status=ReviewItem.Status.REVIEWED)),
            overridden=Count("pk", filter=Q(decision=ReviewItem.Decision.OVERRIDDEN)),
            escalated=Count("pk", filter=Q(status=ReviewItem.Status.ESCALATED)),
            pending=Count("pk", filter=Q(status=ReviewItem.Status.PENDING)),
        )
        .order_by("model_name", "-model_version")
    )
    return [
        {**row, "override_rate": (row["overridden"] / row["decided"]) if row["decided"] else None} for row in grouped
    ]


def review_pending_counts() -> dict[str, int]:
    """Items waiting for a first decision, and escalated ones waiting for a second opinion."""
    from django.db.models import Count

    from policy.models import ReviewItem

    counts = dict(ReviewItem.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    return {"pending": counts.get("pending", 0), "escalated": counts.get("escalated", 0)}
