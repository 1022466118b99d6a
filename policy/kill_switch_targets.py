"""What a kill switch's target is, read from the tenants, keys and model registry.

Engaging a switch in the admin is refused unless its target exists (a typo
such as "acmee" would otherwise be listed as engaged while blocking nothing),
and the kill-switch list says what each switch blocks right now.
"""

from __future__ import annotations

from django.apps import apps

from policy.models import KillSwitch


def kill_switch_target_describe(*, target_type: str, target: str) -> str | None:
    """A short description of what ``target`` would block now, or ``None`` when nothing by that name exists."""
    target = (target or "").strip()
    if target_type == KillSwitch.TargetType.TENANT:
        tenant = apps.get_model("tenants", "Tenant").objects.filter(slug=target).first()
        if tenant is None:
            return None
        live = tenant.api_keys.filter(revoked=False).count()
        return f"tenant {tenant.slug} ({tenant.status}) and its {live:,} unrevoked key(s)"
    if target_type == KillSwitch.TargetType.KEY:
        key = apps.get_model("tenants", "ApiKey").objects.select_related("tenant").filter(prefix=target).first()
        if key is None:
            return None
        state = "revoked" if key.revoked else "usable"
        return f"key {key.prefix} “{key.name}” of tenant {key.tenant.slug} ({state})"
    if target_type == KillSwitch.TargetType.MODEL:
        versions = apps.get_model("inference", "ModelVersion").objects.filter(name=target)
        if not versions.exists():
            return None
        active = versions.filter(status="active").values_list("version", flat=True).first()
        return (
            f"model {target} ({f'v{active} active' if active else 'no active version'}, {versions.count()} version(s))"
        )
    return None


def kill_switch_blocks_now(*, kill_switch: KillSwitch) -> str:
    """What an engaged switch blocks at this moment (lifted ones block nothing)."""
    if not kill_switch.active:
        return "nothing (lifted)"
    described = kill_switch_target_describe(target_type=kill_switch.target_type, target=kill_switch.target)
    return described or "nothing: no such target exists"
