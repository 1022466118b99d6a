"""Writes and decisions of the policy app.

Formulation: :func:`policy_create` / :func:`policy_update` validate a rule
document exactly as the evaluator will read it, store a new immutable
``PolicyVersion`` with author, reason and diff, bump the policy generation so
every process recompiles within about a second, and record a
``policy.change`` audit event -- all in one transaction, so a change is never
in force without its record.  Kill switches and review actions follow the
same pattern with their own audit event types.

Execution: :func:`policy_decide` and :func:`policy_models_visible` evaluate
the per-process compiled state (``policy.selectors.policy_set_get``): no
query per request, and ``PolicyUnavailable`` when the state cannot load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_change_record
from core.errors import ValidationFailed
from core.invalidation import POLICY, clock, generation_bump
from core.logging import current_request_id
from policy.documents import (
    NAME_RE,
    check_scope_target,
    check_window,
    parse_import,
    spec_diff,
    versioned_spec,
)
from policy.errors import KillSwitchConflict, PolicyInvalid, PolicyUnchanged, ReviewItemConflict
from policy.evaluator import Decision, ModelFacts, decide
from policy.kill_switch_listeners import kill_switch_listeners_notify
from policy.models import KillSwitch, Policy, PolicyVersion, ReviewItem
from policy.rules import RuleError, scope_rules_check, validate_document
from policy.selectors import policy_set_get
from tenants.principal import Principal


class _Keep:
    """Sentinel: leave this attribute as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


# --- execution -------------------------------------------------------------------


def policy_decide(*, principal: Principal, model: ModelFacts, purpose: str | None, action: str = "predict") -> Decision:
    """Decide one request against the policies in force now.

    Never raises for a denial (the pipeline raises ``PolicyDenied`` from the
    decision); raises ``PolicyUnavailable`` if policy state cannot be loaded.
    """
    return decide(policy_set_get(), principal, model, purpose, action, time.time())


def policy_models_visible(*, principal: Principal, models: list[ModelFacts]) -> list[ModelFacts]:
    """The models this caller may call, by the same evaluator as predict (purpose-independent rules only)."""
    policy_set = policy_set_get()
    now = time.time()
    return [m for m in models if decide(policy_set, principal, m, None, "list", now).allowed]


# --- formulation -------------------------------------------------------------------


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("A reason is required for every policy change; it is kept with the version.")
    return reason


def _validated_rules(document: Any, *, scope: str) -> list[dict[str, Any]]:
    try:
        rules = validate_document(document)
        scope_rules_check(scope, rules)
    except RuleError as exc:
        raise PolicyInvalid(str(exc)) from None
    return rules


def _after_policy_write() -> None:
    generation_bump(kind=POLICY)
    # This process should see its own write at once, not after the check
    # interval: re-read generations now (same connection, inside the
    # transaction) and again after commit (other threads of this process).
    clock.reset()
    transaction.on_commit(clock.reset)


def policy_create(
    *,
    name: str,
    document: Any,
    actor: str,
    reason: str,
    scope: str = Policy.Scope.GLOBAL,
    tenant_slug: str = "",
    model_name: str = "",
    enabled: bool = True,
    effective_from: datetime | None = None,
    effective_until: datetime | None = None,
) -> Policy:
    """Create a policy with its first version.

    Raises ``PolicyInvalid`` for anything the evaluator could not evaluate
    (rules, scope, window, name) and ``ValidationFailed`` without a reason.
    """
    reason = _require_reason(reason)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PolicyInvalid("Policy names are 1-64 lowercase letters, digits, ':', '.', '_' or '-'.")
    if scope not in Policy.Scope.values:
        raise PolicyInvalid(f"Scope must be one of {', '.join(Policy.Scope.values)}.")
    try:
        check_scope_target(scope=scope, tenant_slug=tenant_slug, model_name=model_name, where=f"policy {name!r}")
        check_window(effective_from, effective_until, where=f"policy {name!r}")
    except RuleError as exc:
        raise PolicyInvalid(str(exc)) from None
    rules = _validated_rules(document, scope=scope)
    spec = versioned_spec(rules=rules, enabled=enabled, effective_from=effective_from, effective_until=effective_until)
    with transaction.atomic():
        if Policy.objects.filter(name=name).exists():
            raise PolicyInvalid(f"A policy named {name!r} already exists.")
        now = timezone.now()
        try:
            # A savepoint: a concurrent create of the same name loses cleanly.
            with transaction.atomic():
                policy = Policy.objects.create(
                    name=name,
                    scope=scope,
                    tenant_slug=tenant_slug,
                    model_name=model_name,
                    enabled=enabled,
                    effective_from=effective_from,
                    effective_until=effective_until,
                    created_at=now,
                    updated_at=now,
                )
        except IntegrityError:
            raise PolicyInvalid(f"A policy named {name!r} already exists.") from None
        diff = spec_diff(None, spec, from_label="/dev/null", to_label=f"{name}@1")
        version = PolicyVersion.objects.create(
            policy=policy,
            number=1,
            document=rules,
            enabled=enabled,
            effective_from=effective_from,
            effective_until=effective_until,
            author=actor,
            created_at=now,
            reason=reason,
            diff=diff,
        )
        policy.current_version = version
        policy.save(update_fields=["current_version"])
        _after_policy_write()
        audit_change_record(
            actor=actor,
            action="policy.create",
            target=f"policy:{name}",
            before=None,
            after={"scope": scope, "tenant_slug": tenant_slug, "model_name": model_name, **spec},
            tenant_slug=tenant_slug,
            event_type=AuditEvent.Type.POLICY_CHANGE,
            request_id=current_request_id(),
            extra={"policy": name, "version": 1, "label": f"{name}@1", "reason": reason, "diff": diff},
        )
    return policy


def policy_update(
    *,
    policy: Policy,
    document: Any,
    actor: str,
    reason: str,
    enabled: bool | Any = KEEP,
    effective_from: datetime | Any | None = KEEP,
    effective_until: datetime | Any | None = KEEP,
) -> PolicyVersion:
    """Store a new immutable version of ``policy`` (rules, and optionally enabled flag and window).

    Raises ``PolicyInvalid`` for a document that cannot be evaluated and
    ``PolicyUnchanged`` when nothing would change.  Scope and name never
    change: a differently scoped policy is a new policy.
    """
    reason = _require_reason(reason)
    rules = _validated_rules(document, scope=policy.scope)
    with transaction.atomic():
        # The row lock serialises concurrent edits so version numbers never collide.
        locked = Policy.objects.select_for_update(of=("self",)).select_related("current_version").get(pk=policy.pk)
        new_enabled = locked.enabled if enabled is KEEP else enabled
        new_from = locked.effective_from if effective_from is KEEP else effective_from
        new_until = locked.effective_until if effective_until is KEEP else effective_until
        try:
            check_window(new_from, new_until, where=f"policy {locked.name!r}")
        except RuleError as exc:
            raise PolicyInvalid(str(exc)) from None
        previous = locked.current_version
        before = versioned_spec(
            rules=previous.document if previous else [],
            enabled=locked.enabled,
            effective_from=locked.effective_from,
            effective_until=locked.effective_until,
        )
        after = versioned_spec(rules=rules, enabled=new_enabled, effective_from=new_from, effective_until=new_until)
        if previous is not None and before == after:
            raise PolicyUnchanged(f"Policy {locked.name!r} is unchanged; no version was created.")
        number = (previous.number if previous else 0) + 1
        diff = spec_diff(
            before if previous else None,
            after,
            from_label=f"{locked.name}@{previous.number}" if previous else "/dev/null",
            to_label=f"{locked.name}@{number}",
        )
        now = timezone.now()
        version = PolicyVersion.objects.create(
            policy=locked,
            number=number,
            document=rules,
            enabled=new_enabled,
            effective_from=new_from,
            effective_until=new_until,
            author=actor,
            created_at=now,
            reason=reason,
            diff=diff,
        )
        locked.enabled = new_enabled
        locked.effective_from = new_from
        locked.effective_until = new_until
        locked.current_version = version
        locked.updated_at = now
        locked.save(update_fields=["enabled", "effective_from", "effective_until", "current_version", "updated_at"])
        _after_policy_write()
        audit_change_record(
            actor=actor,
            action="policy.update",
            target=f"policy:{locked.name}",
            before=before,
            after=after,
            tenant_slug=locked.tenant_slug,
            event_type=AuditEvent.Type.POLICY_CHANGE,
            request_id=current_request_id(),
            extra={"policy": locked.name, "version": number, "label": version.label, "reason": reason, "diff": diff},
        )
    # Keep the caller's instance in step with what was stored.
    policy.enabled, policy.effective_from, policy.effective_until = new_enabled, new_from, new_until
    policy.current_version, policy.updated_at = version, now
    return version


@dataclass(frozen=True)
class PolicyImportChange:
    """What an import did (or, in a dry run, would do) to one policy."""

    name: str
    action: str  # "create", "update" or "unchanged"
    diff: str
    version: int | None  # the version created (``None`` for a dry run or no change)


def policy_import(*, data: Any, actor: str, reason: str, dry_run: bool = False) -> list[PolicyImportChange]:
    """Apply an export document: validate everything first, then create versions only where something changed.

    All or nothing: one invalid policy refuses the whole file.  Policies not in
    the file are left alone.  ``dry_run`` computes the same diffs and writes nothing.
    """
    reason = _require_reason(reason)
    try:
        entries = parse_import(data)
    except RuleError as exc:
        raise PolicyInvalid(str(exc)) from None
    changes: list[PolicyImportChange] = []
    with transaction.atomic():
        existing = {
            p.name: p
            for p in Policy.objects.select_related("current_version").filter(name__in=[e.name for e in entries])
        }
        for entry in entries:
            policy = existing.get(entry.name)
            if policy is None:
                diff = spec_diff(None, entry.spec, from_label="/dev/null", to_label=f"{entry.name}@1")
                version = None
                if not dry_run:
                    policy_create(
                        name=entry.name,
                        scope=entry.scope,
                        tenant_slug=entry.tenant_slug,
                        model_name=entry.model_name,
                        document=entry.rules,
                        enabled=entry.enabled,
                        effective_from=entry.effective_from,
                        effective_until=entry.effective_until,
                        actor=actor,
                        reason=reason,
                    )
                    version = 1
                changes.append(PolicyImportChange(entry.name, "create", diff, version))
                continue
            if (policy.scope, policy.tenant_slug, policy.model_name) != (
                entry.scope,
                entry.tenant_slug,
                entry.model_name,
            ):
                raise PolicyInvalid(
                    f"policy {entry.name!r}: its scope cannot change on import "
                    f"(stored {policy.scope}:{policy.target or '-'}); create a new policy instead"
                )
            current = policy.current_version
            before = versioned_spec(
                rules=current.document if current else [],
                enabled=policy.enabled,
                effective_from=policy.effective_from,
                effective_until=policy.effective_until,
            )
            if current is not None and before == entry.spec:
                changes.append(PolicyImportChange(entry.name, "unchanged", "", None))
                continue
            number = (current.number if current else 0) + 1
            diff = spec_diff(
                before if current else None,
                entry.spec,
                from_label=f"{entry.name}@{current.number}" if current else "/dev/null",
                to_label=f"{entry.name}@{number}",
            )
            version_number = None
            if not dry_run:
                version_number = policy_update(
                    policy=policy,
                    document=entry.rules,
                    enabled=entry.enabled,
                    effective_from=entry.effective_from,
                    effective_until=entry.effective_until,
                    actor=actor,
                    reason=reason,
                ).number
            changes.append(PolicyImportChange(entry.name, "update", diff, version_number))
    return changes


# --- kill switches -------------------------------------------------------------------


def kill_switch_engage(*, target_type: str, target: str, reason: str, actor: str) -> KillSwitch:
    """Block a tenant (slug), an API key (prefix) or a model (name) in every process within about a second."""
    if target_type not in KillSwitch.TargetType.values:
        raise ValidationFailed(f"target_type must be one of {', '.join(KillSwitch.TargetType.values)}.")
    target = (target or "").strip()
    if not target:
        raise ValidationFailed("A kill switch needs a target (tenant slug, key prefix or model name).")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("A kill switch needs a reason; it is kept in the record.")
    try:
        with transaction.atomic():
            if KillSwitch.objects.filter(target_type=target_type, target=target, lifted_at__isnull=True).exists():
                raise KillSwitchConflict(f"A kill switch for {target_type} {target!r} is already engaged.")
            switch = KillSwitch.objects.create(
                target_type=target_type, target=target, reason=reason, created_by=actor, created_at=timezone.now()
            )
            _after_policy_write()
            audit_change_record(
                actor=actor,
                action="kill_switch.engage",
                target=f"{target_type}:{target}",
                before=None,
                after={"kill_switch_id": switch.pk, "target_type": target_type, "target": target, "active": True},
                tenant_slug=target if target_type == KillSwitch.TargetType.TENANT else "",
                event_type=AuditEvent.Type.KILL_SWITCH,
                request_id=current_request_id(),
                extra={"reason": reason},
            )
            kill_switch_listeners_notify(kill_switch=switch, action="engaged", actor=actor)
    except IntegrityError as exc:
        # Two operators engaging the same target at once: the partial unique index decides.
        raise KillSwitchConflict(f"A kill switch for {target_type} {target!r} is already engaged.") from exc
    return switch


def kill_switch_lift(*, kill_switch: KillSwitch, actor: str, reason: str) -> KillSwitch:
    """Lift an engaged kill switch; lifting is itself a recorded action with a mandatory reason."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Lifting a kill switch needs a reason; it is kept in the record.")
    with transaction.atomic():
        switch = KillSwitch.objects.select_for_update().get(pk=kill_switch.pk)
        if switch.lifted_at is not None:
            raise KillSwitchConflict(f"Kill switch {switch} was already lifted.")
        switch.lifted_at = timezone.now()
        switch.lifted_by = actor
        switch.lift_reason = reason
        switch.save(update_fields=["lifted_at", "lifted_by", "lift_reason"])
        _after_policy_write()
        audit_change_record(
            actor=actor,
            action="kill_switch.lift",
            target=f"{switch.target_type}:{switch.target}",
            before={"kill_switch_id": switch.pk, "active": True, "engaged_reason": switch.reason},
            after={"kill_switch_id": switch.pk, "active": False},
            tenant_slug=switch.target if switch.target_type == KillSwitch.TargetType.TENANT else "",
            event_type=AuditEvent.Type.KILL_SWITCH,
            request_id=current_request_id(),
            extra={"reason": reason},
        )
        kill_switch_listeners_notify(kill_switch=switch, action="lifted", actor=actor)
    kill_switch.lifted_at, kill_switch.lifted_by, kill_switch.lift_reason = (
        switch.lifted_at,
        switch.lifted_by,
        switch.lift_reason,
    )
    return switch


# --- human oversight -------------------------------------------------------------------


def review_item_create(
    *,
    audit_seq: int,
    request_id: str,
    principal: Principal,
    model: ModelFacts,
    label: int | str,
    top_probability: float,
) -> None:
    """Queue one low-confidence prediction for human review (EU AI Act Art. 14).

    The queueing itself is recorded by the request's own audit event
    (``needs_review`` and the same ``request_id``/``audit_seq``), so this is a
    single INSERT on the request path; the reviewer's action is recorded by
    :func:`review_item_resolve`.
    """
    review_items_create(
        audit_seq=audit_seq,
        request_id=request_id,
        principal=principal,
        model=model,
        predictions=[(label, top_probability)],
    )


def review_items_create(
    *,
    audit_seq: int,
    request_id: str,
    principal: Principal,
    model: ModelFacts,
    predictions: list[tuple[int | str, float]],
    instances: list[tuple[int, Any]] | None = None,
) -> int:
    """Queue several predictions of one request in one INSERT (batch requests); returns how many.

    ``instances``, aligned with ``predictions``, gives each one's index in the
    request and its probability vector (stored rounded to 4 places), so a
    reviewer can tell the items of one request apart and see the alternatives.
    """
    details = instances if instances is not None else [(index, []) for index in range(len(predictions))]
    items = [
        ReviewItem(
            instance_index=index,
            probabilities=[round(float(p), 4) for p in vector],
            audit_seq=audit_seq,
            request_id=request_id,
            tenant_id=principal.tenant_id,
            tenant_slug=principal.tenant_slug,
            key_prefix=principal.key_prefix,
            model_name=model.name,
            model_version=model.version,
            label=str(label),
            top_probability=float(top_probability),
        )
        for (label, top_probability), (index, vector) in zip(predictions, details, strict=True)
    ]
    ReviewItem.objects.bulk_create(items)
    return len(items)


def review_item_resolve(*, item: ReviewItem, actor: str, note: str) -> ReviewItem:
    """Mark a queued prediction reviewed; the note is mandatory and the action is recorded."""
    note = (note or "").strip()
    if not note:
        raise ValidationFailed("A review needs a note saying what the reviewer concluded.")
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().get(pk=item.pk)
        if locked.status == ReviewItem.Status.REVIEWED:
            raise ReviewItemConflict(f"Review item {locked.pk} was already reviewed by {locked.reviewer}.")
        locked.status = ReviewItem.Status.REVIEWED
        locked.reviewer = actor
        locked.note = note
        locked.reviewed_at = timezone.now()
        locked.save(update_fields=["status", "reviewer", "note", "reviewed_at"])
        audit_change_record(
            actor=actor,
            action="review.resolve",
            target=f"review_item:{locked.pk}",
            before={"status": ReviewItem.Status.PENDING},
            after={"status": ReviewItem.Status.REVIEWED, "note": note},
            tenant_id=locked.tenant_id,
            tenant_slug=locked.tenant_slug,
            event_type=AuditEvent.Type.REVIEW,
            # The reviewed request's id, so a lookup by request id finds its review.
            request_id=locked.request_id,
            extra={
                "audit_seq": locked.audit_seq,
                "model": f"{locked.model_name}@{locked.model_version}",
                "label": locked.label,
                "top_probability": locked.top_probability,
                "admin_request_id": current_request_id(),
            },
        )
    item.status, item.reviewer, item.note, item.reviewed_at = (
        locked.status,
        locked.reviewer,
        locked.note,
        locked.reviewed_at,
    )
    return locked


def review_item_decide(
    *, item: ReviewItem, actor: str, decision: str, note: str, corrected_label: str = ""
) -> ReviewItem:
    """Record a reviewer's decision on one queued prediction: confirm, override (with the right label) or escalate.

    The note is mandatory; an override needs a corrected label different from
    the predicted one.  An escalated item may be decided again (by a second
    reviewer); a confirmed or overridden one may not.  Recorded in the audit
    trail with the reviewed request's id, so override rates can be followed.
    """
    note = (note or "").strip()
    corrected_label = (corrected_label or "").strip()
    if decision not in ReviewItem.Decision.values:
        raise ValidationFailed(f"decision must be one of {', '.join(ReviewItem.Decision.values)}.")
    if not note:
        raise ValidationFailed("A review needs a note saying what the reviewer concluded.")
    if decision == ReviewItem.Decision.OVERRIDDEN:
        if not corrected_label:
            raise ValidationFailed("An override needs the corrected label.")
    else:
        corrected_label = ""
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().get(pk=item.pk)
        if locked.status == ReviewItem.Status.REVIEWED:
            raise ReviewItemConflict(f"Review item {locked.pk} was already reviewed by {locked.reviewer}.")
        if decision == ReviewItem.Decision.OVERRIDDEN and corrected_label == locked.label:
            raise ValidationFailed("The corrected label equals the predicted one; confirm the prediction instead.")
        before = {"status": locked.status, "decision": locked.decision}
        locked.status = (
            ReviewItem.Status.ESCALATED if decision == ReviewItem.Decision.ESCALATED else ReviewItem.Status.REVIEWED
        )
        locked.decision = decision
        locked.corrected_label = corrected_label
        locked.reviewer = actor
        locked.note = note
        locked.reviewed_at = timezone.now()
        locked.save(update_fields=["status", "decision", "corrected_label", "reviewer", "note", "reviewed_at"])
        audit_change_record(
            actor=actor,
            action=f"review.{decision}",
            target=f"review_item:{locked.pk}",
            before=before,
            after={"status": locked.status, "decision": decision, "corrected_label": corrected_label, "note": note},
            tenant_id=locked.tenant_id,
            tenant_slug=locked.tenant_slug,
            event_type=AuditEvent.Type.REVIEW,
            request_id=locked.request_id,
            extra={
                "audit_seq": locked.audit_seq,
                "instance_index": locked.instance_index,
                "model": f"{locked.model_name}@{locked.model_version}",
                "label": locked.label,
                "top_probability": locked.top_probability,
                "admin_request_id": current_request_id(),
            },
        )
    return locked
