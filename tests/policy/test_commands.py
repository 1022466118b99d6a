"""export_policies / import_policies: a round trip, dry runs, and imports validated like admin edits."""

from __future__ import annotations

import json
from io import StringIO

import pytest
import yaml
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from policy.models import Policy, PolicyVersion
from policy.services import policy_create

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def tenant_policy():
    return policy_create(
        name="tenant:demo",
        scope="tenant",
        tenant_slug="demo",
        document=[{"id": "only-digits", "type": "model_access", "mode": "enforce", "params": {"models": ["digits"]}}],
        actor="staff:alice",
        reason="setup",
    )


def export(tmp_path, fmt: str = "yaml") -> tuple[object, str]:
    path = tmp_path / f"policies.{fmt}"
    call_command("export_policies", "--format", fmt, "--output", str(path), stdout=StringIO(), stderr=StringIO())
    text = path.read_text()
    return (json.loads(text) if fmt == "json" else yaml.safe_load(text)), str(path)


def write(tmp_path, data, name: str = "edited.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_lists_every_policy_with_rules_scope_and_version(tmp_path, tenant_policy, fmt):
    data, _ = export(tmp_path, fmt)
    assert data["format"] == "maas-policies/1"
    by_name = {p["name"]: p for p in data["policies"]}
    assert set(by_name) == {"baseline", "tenant:demo"}
    assert by_name["tenant:demo"]["scope"] == "tenant"
    assert by_name["tenant:demo"]["tenant_slug"] == "demo"
    assert by_name["tenant:demo"]["version"] == 1
    assert by_name["tenant:demo"]["rules"] == tenant_policy.current_version.document
    assert "tenant_slug" not in by_name["baseline"]


def test_export_to_stdout():
    assert "name: baseline" in run("export_policies")
    assert json.loads(run("export_policies", "--format", "json"))["policies"][0]["name"] == "baseline"


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip_changes_nothing(tmp_path, tenant_policy, fmt):
    _, path = export(tmp_path, fmt)
    versions, events = PolicyVersion.objects.count(), AuditEvent.objects.count()
    output = run("import_policies", path)
    assert "baseline: unchanged" in output and "tenant:demo: unchanged" in output
    assert "0 of 2 policies changed" in output
    assert (PolicyVersion.objects.count(), AuditEvent.objects.count()) == (versions, events)


def test_dry_run_shows_the_diff_and_writes_nothing(tmp_path, tenant_policy):
    data, _ = export(tmp_path)
    for policy in data["policies"]:
        if policy["name"] == "tenant:demo":
            policy["rules"][0]["params"]["models"] = ["digits", "faces"]
    data["policies"].append({"name": "model:faces", "scope": "model", "model_name": "faces", "rules": []})
    path = write(tmp_path, data)
    versions, events = PolicyVersion.objects.count(), AuditEvent.objects.count()
    output = run("import_policies", path, "--dry-run")
    assert "tenant:demo: would update" in output
    assert "--- tenant:demo@1\n+++ tenant:demo@2" in output
    assert "+    - faces" in output
    assert "model:faces: would create" in output
    assert "baseline: unchanged" in output
    assert "2 of 3 policies would change (dry run: nothing written)." in output
    assert (PolicyVersion.objects.count(), AuditEvent.objects.count()) == (versions, events)
    assert not Policy.objects.filter(name="model:faces").exists()


def test_import_creates_versions_only_for_changed_policies(tmp_path, tenant_policy):
    data, _ = export(tmp_path)
    for policy in data["policies"]:
        if policy["name"] == "tenant:demo":
            policy["rules"].append({"id": "watch", "type": "data_residency", "mode": "monitor", "params": {}})
    data["policies"].append({"name": "model:faces", "scope": "model", "model_name": "faces", "rules": []})
    output = run("import_policies", write(tmp_path, data), "--reason", "Quarterly review")
    assert "tenant:demo: updated (version 2)" in output
    assert "model:faces: created (version 1)" in output
    demo = Policy.objects.get(name="tenant:demo")
    assert demo.current_version.number == 2
    assert demo.current_version.reason == "Quarterly review"
    assert demo.current_version.author == "command:import_policies"
    assert Policy.objects.get(name="baseline").current_version.number == 1
    actions = set(AuditEvent.objects.filter(event_type="policy.change").values_list("action", "actor"))
    assert ("policy.update", "command:import_policies") in actions
    assert ("policy.create", "command:import_policies") in actions


def test_import_of_an_invalid_rule_is_refused_as_a_whole(tmp_path, tenant_policy):
    data, _ = export(tmp_path)
    data["policies"].append({"name": "new-one", "rules": []})
    data["policies"].append({"name": "broken", "rules": [{"id": "x", "type": "teleport", "mode": "enforce"}]})
    versions = PolicyVersion.objects.count()
    with pytest.raises(CommandError, match="policy 'broken': rule 1 \\('x'\\): unknown rule type 'teleport'"):
        run("import_policies", write(tmp_path, data))
    assert PolicyVersion.objects.count() == versions
    assert not Policy.objects.filter(name="new-one").exists()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x", "scope": "tenant", "rules": []}, "tenant policy needs tenant_slug"),
        ({"name": "x", "rules": [], "effective_from": "2026-01-01T00:00:00"}, "must include a UTC offset"),
        (
            {
                "name": "x",
                "rules": [],
                "effective_from": "2026-02-01T00:00:00Z",
                "effective_until": "2026-01-01T00:00:00Z",
            },
            "effective_until must be later",
        ),
        ({"name": "x"}, "rules are missing"),
        ({"name": "Bad Name", "rules": []}, "name must be"),
        ({"name": "x", "rules": [], "owner": "me"}, "unknown key(s) owner"),
        ({"name": "tenant:demo", "scope": "global", "rules": []}, "scope cannot change"),
        # YAML gives non-text keys and values; they are refused like any other mistake, never a traceback.
        ({"name": "x", "rules": [], 1: "one", "owner": "me"}, "unknown key(s) 1, owner"),
        ({"name": "x", "scope": ["global"], "rules": []}, "scope must be one of"),
        ({"name": "x", "rules": [{"id": "r", "type": ["x"], "mode": "enforce"}]}, "unknown rule type ['x']"),
        (
            {
                "name": "x",
                "rules": [{"id": "r", "type": "model_access", "mode": "enforce", "params": {"max_risk_tier": {}}}],
            },
            "max_risk_tier must be one of",
        ),
        (
            {"name": "x", "rules": [{"id": "r", "type": "purpose_limitation", "mode": "enforce", "params": {True: 1}}]},
            "unknown parameter(s) True",
        ),
    ],
)
def test_import_validates_like_an_admin_edit(tmp_path, tenant_policy, entry, message):
    with pytest.raises(CommandError) as excinfo:
        run("import_policies", write(tmp_path, {"policies": [entry]}))
    assert message in str(excinfo.value)


def test_import_reads_windows(tmp_path):
    data = {
        "policies": [
            {
                "name": "holiday",
                "effective_from": "2026-12-24T00:00:00Z",
                "effective_until": "2026-12-27T00:00:00+00:00",
                "rules": [],
            }
        ]
    }
    run("import_policies", write(tmp_path, data))
    policy = Policy.objects.get(name="holiday")
    assert policy.effective_from.isoformat() == "2026-12-24T00:00:00+00:00"
    assert policy.effective_until.isoformat() == "2026-12-27T00:00:00+00:00"
    exported, _ = export(tmp_path)
    holiday = next(p for p in exported["policies"] if p["name"] == "holiday")
    assert (holiday["effective_from"], holiday["effective_until"]) == ("2026-12-24T00:00:00Z", "2026-12-27T00:00:00Z")


def test_unreadable_or_malformed_files(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        run("import_policies", str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies: [unclosed")
    with pytest.raises(CommandError, match="neither valid YAML nor JSON"):
        run("import_policies", str(bad))
    bad.write_text("- just a list")
    with pytest.raises(CommandError, match="'policies' list"):
        run("import_policies", str(bad))
