"""Domain errors of the policy app (subclasses of :mod:`core.errors`).

Formulation errors (invalid or unchanged policies, kill-switch and review
conflicts) and execution errors: ``PolicyDenied`` (raised by the pipeline from
a deny decision) and ``PolicyUnavailable`` (policy state could not be loaded:
fail closed with 503).
"""

from __future__ import annotations

from core.errors import BackendUnavailable, Conflict, Forbidden, ValidationFailed


class PolicyInvalid(ValidationFailed):
    """A policy (or import file) that the evaluator could not evaluate; the detail says why."""

    code, title = "policy_invalid", "Invalid policy"


class PolicyUnchanged(ValidationFailed):
    """An edit that changes nothing: no version is created for it."""

    code, title = "policy_unchanged", "Policy unchanged"


class KillSwitchConflict(Conflict):
    """Engaging a target that is already blocked, or lifting a switch that is already lifted."""

    code, title = "kill_switch_conflict", "Kill switch conflict"


class ReviewItemConflict(Conflict):
    """Reviewing an item that was already reviewed."""

    code, title = "review_item_conflict", "Review item already reviewed"


class PolicyDenied(Forbidden):
    code, title = "policy_denied", "Denied by policy"


class PolicyUnavailable(BackendUnavailable):
    code, title = "policy_unavailable", "Policy state unavailable"
