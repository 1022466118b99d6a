"""Lifecycle guards: checks that upper layers register to veto a model's activation, rollback or retirement.

The registry sits below the supervision app in the layers contract, so it
cannot ask ``monitoring`` whether an incident froze a model's evidence.
Instead ``monitoring`` registers a guard here when its app is ready, and the
registry calls every registered guard inside its locked transaction before it
changes a version's status (EU AI Act Art. 73(6): the system must not be
altered in a way that affects the evaluation of a serious incident before the
authority is informed).  A guard refuses by raising a ``DomainError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LifecycleGuard = Callable[..., None]
"""Called as ``guard(version=ModelVersion, operation=str)``; raises a ``DomainError`` to refuse."""

_guards: list[LifecycleGuard] = []

OPERATIONS = ("activate", "rollback", "retire", "rollout")


def lifecycle_guard_register(guard: LifecycleGuard) -> None:
    """Add ``guard`` (idempotent: registering the same function twice keeps one)."""
    if guard not in _guards:
        _guards.append(guard)


def lifecycle_guard_unregister(guard: LifecycleGuard) -> None:
    """Remove ``guard`` if registered (tests)."""
    if guard in _guards:
        _guards.remove(guard)


def lifecycle_guards_check(*, version: Any, operation: str) -> None:
    """Run every guard for ``operation`` on ``version``; the first refusal propagates."""
    for guard in list(_guards):
        guard(version=version, operation=operation)
