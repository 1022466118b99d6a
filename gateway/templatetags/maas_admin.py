"""Template tags of the admin index: what needs a person's attention now."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.inclusion_tag("admin/maas_attention.html", takes_context=True)
def maas_attention(context: dict[str, Any]) -> dict[str, Any]:
    """Pending and escalated review items and engaged kill switches, each shown only to those who may view them."""
    from policy.models import KillSwitch
    from policy.selectors import review_pending_counts

    user = context["request"].user
    rows: list[dict[str, Any]] = []
    if user.has_perm("policy.view_reviewitem"):
        counts = review_pending_counts()
        rows.append(
            {
                "label": "Review items pending",
                "count": counts["pending"],
                "url": "policy/reviewitem/?status__exact=pending",
            }
        )
        rows.append(
            {
                "label": "Review items escalated",
                "count": counts["escalated"],
                "url": "policy/reviewitem/?status__exact=escalated",
            }
        )
    if user.has_perm("policy.view_killswitch"):
        engaged = KillSwitch.objects.filter(lifted_at__isnull=True).count()
        rows.append({"label": "Kill switches engaged", "count": engaged, "url": "policy/killswitch/?state=active"})
    usage = user.has_perm("tenants.view_tenant") or user.has_perm("audit.view_auditevent")
    return {"rows": rows, "compliance": user.has_perm("audit.view_auditevent"), "usage": usage}
