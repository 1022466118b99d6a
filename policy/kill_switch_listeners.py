"""Kill-switch listeners: callbacks that upper layers register to hear of a kill switch engaged or lifted.

The policy app sits below the supervision app in the layers contract, so it
cannot import ``monitoring`` to send the signed ``kill_switch.*`` webhooks.
Instead ``monitoring`` registers a listener here when its app is ready (the
same pattern as ``inference.lifecycle_guards``), and the kill-switch services
call every listener inside their transaction, after the audit record: a
listener that writes rows (the webhook event) commits or rolls back with the
switch itself, and enqueues anything external with ``on_commit``.
Plain function calls rather than Django signals: the call sites are explicit
and a test can see exactly who listens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KillSwitchListener = Callable[..., None]
"""Called as ``listener(kill_switch=KillSwitch, action="engaged" | "lifted", actor=str)``."""

_listeners: list[KillSwitchListener] = []

ACTIONS = ("engaged", "lifted")


def kill_switch_listener_register(listener: KillSwitchListener) -> None:
    """Add ``listener`` (idempotent: registering the same function twice keeps one)."""
    if listener not in _listeners:
        _listeners.append(listener)


def kill_switch_listener_unregister(listener: KillSwitchListener) -> None:
    """Remove ``listener`` if registered (tests)."""
    if listener in _listeners:
        _listeners.remove(listener)


def kill_switch_listeners_notify(*, kill_switch: Any, action: str, actor: str) -> None:
    """Call every listener; an exception propagates and rolls the caller's transaction back."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    for listener in list(_listeners):
        listener(kill_switch=kill_switch, action=action, actor=actor)
