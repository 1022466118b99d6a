"""Cross-process invalidation: another process holding compiled state sees each change.

A real child process (same test database via ``server_env``) loops on
``policy_decide`` and prints every decision; this process edits the policy
twice and engages a kill switch.  Each printed decision must name the version
whose rules produced it, and the child must switch to each new state while it
keeps running.  How fast is not asserted: wall-clock bounds across processes
are flaky on loaded machines; the generous ``read_until`` timeouts only stop
a hung test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from policy.models import Policy
from policy.services import kill_switch_engage, policy_create, policy_update
from tests.support import ROOT, server_env, stop_process

pytestmark = [pytest.mark.embedded, pytest.mark.e2e]

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import django
    django.setup()
    from policy.evaluator import ModelFacts
    from policy.services import policy_decide
    from tenants.principal import Principal

    principal = Principal(
        tenant_id=1, tenant_slug="demo", region="eu", identity_verified=False, approved_purposes=(),
        key_id=1, key_prefix="key-child", scopes=frozenset({"predict"}),
    )
    model = ModelFacts(name="digits", version=1, risk_tier="limited", region="eu")
    deadline = time.time() + float(sys.argv[1])
    while time.time() < deadline:
        d = policy_decide(principal=principal, model=model, purpose=None)
        line = {"t": time.time(), "allowed": d.allowed, "versions": d.policy_versions, "rule": d.rule_id}
        print(json.dumps(line), flush=True)
        time.sleep(0.02)
    """
)

ALLOW = [{"id": "tiers", "type": "model_access", "mode": "enforce", "params": {"max_risk_tier": "high"}}]
DENY = [{"id": "block", "type": "model_access", "mode": "enforce", "params": {"deny_models": ["digits"]}}]


def read_until(proc: subprocess.Popen, lines: list[dict], predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = proc.stdout.readline()
        if not raw:
            raise AssertionError(f"child exited early ({proc.wait(5)}); see its log in the test's tmp_path")
        line = json.loads(raw)
        lines.append(line)
        if predicate(line):
            return line
    raise AssertionError(f"no matching decision within {timeout}s; last: {lines[-3:]}")


@pytest.mark.django_db(transaction=True)
def test_other_process_sees_policy_and_kill_switch_changes(tmp_path):
    Policy.objects.filter(name="baseline").update(enabled=False)
    policy = policy_create(name="p", document=ALLOW, actor="test", reason="v1")
    stderr = open(tmp_path / "child.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, "90"],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )
    lines: list[dict] = []
    try:
        read_until(proc, lines, lambda d: d["versions"] == "p@1", timeout=60)
        # A few more decisions, so the child is serving from its cached state.
        read_until(proc, lines, lambda d: len(lines) >= 10, timeout=10)

        policy_update(policy=policy, document=DENY, actor="test", reason="v2: block digits")
        seen = read_until(proc, lines, lambda d: d["versions"] == "p@2", timeout=10)
        assert (seen["allowed"], seen["rule"]) == (False, "p/block")

        policy_update(policy=policy, document=ALLOW, actor="test", reason="v3: allow again")
        seen = read_until(proc, lines, lambda d: d["versions"] == "p@3", timeout=10)
        assert seen["allowed"] is True

        switch = kill_switch_engage(target_type="key", target="key-child", reason="abuse", actor="test")
        seen = read_until(proc, lines, lambda d: d["rule"] == "kill_switch/key", timeout=10)
        assert seen["allowed"] is False
        assert switch.active
    finally:
        stop_process(proc)
        stderr.close()

    # Every decision names the version whose rules produced it, before, during and after each change.
    for line in lines:
        if line["rule"] == "kill_switch/key":
            continue
        expected_allowed = line["versions"] in ("p@1", "p@3")
        assert line["allowed"] is expected_allowed, line
