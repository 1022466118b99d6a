"""Install the baseline global policy, so a fresh gateway decides sensibly from the first request.

Version 1 is written directly (migrations cannot call services); its diff is
rendered the same way the services render diffs.  Reversing the migration
removes the baseline only if it was never edited.
"""

import difflib

import yaml
from django.db import migrations
from django.utils import timezone

BASELINE_NAME = "baseline"
BASELINE_RULES = [
    {
        "id": "max-risk-tier",
        "type": "model_access",
        "mode": "enforce",
        "params": {"max_risk_tier": "high"},
        "description": "EU AI Act: prohibited-tier models are never served (the evaluator also refuses them).",
    },
    {
        "id": "identity-high-risk",
        "type": "identity_verification",
        "mode": "enforce",
        "params": {"min_risk_tier": "high"},
        "description": "High-risk models only for identity-verified tenants (service agreements with registered users).",
    },
    {
        "id": "cn-residency",
        "type": "data_residency",
        "mode": "enforce",
        "params": {"mapping": {"*": ["*"], "cn": ["cn"]}},
        "description": "PIPL: data of tenants in China is processed only by models deployed in China.",
    },
    {
        "id": "human-oversight",
        "type": "human_oversight",
        "mode": "enforce",
        "params": {"threshold": 0.6},
        "description": "EU AI Act Art. 14: predictions below 0.6 top probability are queued for human review.",
    },
    {
        "id": "no-raw-inputs",
        "type": "data_minimisation",
        "mode": "enforce",
        "params": {"retain_raw_input": False},
        "description": "PIPL / Interim Measures: keep only a keyed digest of inputs, never the raw inputs.",
    },
]
REASON = "Baseline policy installed with the gateway."


def install_baseline(apps, schema_editor):
    Policy = apps.get_model("policy", "Policy")
    PolicyVersion = apps.get_model("policy", "PolicyVersion")
    if Policy.objects.filter(name=BASELINE_NAME).exists():
        return
    now = timezone.now()
    spec = {"enabled": True, "effective_from": None, "effective_until": None, "rules": BASELINE_RULES}
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    diff = "".join(
        difflib.unified_diff([], text.splitlines(keepends=True), fromfile="/dev/null", tofile=f"{BASELINE_NAME}@1")
    )
    policy = Policy.objects.create(name=BASELINE_NAME, scope="global", enabled=True, created_at=now, updated_at=now)
    version = PolicyVersion.objects.create(
        policy=policy,
        number=1,
        document=BASELINE_RULES,
        enabled=True,
        author="system:migration",
        created_at=now,
        reason=REASON,
        diff=diff,
    )
    Policy.objects.filter(pk=policy.pk).update(current_version=version)


def remove_baseline(apps, schema_editor):
    Policy = apps.get_model("policy", "Policy")
    PolicyVersion = apps.get_model("policy", "PolicyVersion")
    policy = Policy.objects.filter(name=BASELINE_NAME).first()
    if policy is None or PolicyVersion.objects.filter(policy=policy).count() > 1:
        return
    Policy.objects.filter(pk=policy.pk).update(current_version=None)
    # Historical models use a plain manager, so this delete is allowed here.
    PolicyVersion.objects.filter(policy=policy).delete()
    policy.delete()


class Migration(migrations.Migration):
    dependencies = [("policy", "0001_initial")]

    operations = [migrations.RunPython(install_baseline, remove_baseline)]
