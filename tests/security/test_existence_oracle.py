"""Issue 13, item 7: a model hidden from a caller answers exactly like a model that does not exist.

Hidden means absent from the caller's listing (the key's allow-list or a
purpose-independent policy restriction).  A 403 for hidden models but 404 for
missing ones let any key enumerate the catalogue; the denial is still audited
with the rule that hid the model.
"""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEvent
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _body(response) -> dict:
    body = response.json()
    body.pop("request_id", None)
    return body


def _hide_by_policy(slug: str) -> None:
    from policy.services import policy_create

    policy_create(
        name=f"tenant:{slug}",
        scope="tenant",
        tenant_slug=slug,
        document=[
            {"id": "no-digits", "type": "model_access", "mode": "enforce", "params": {"deny_models": ["digits"]}}
        ],
        actor="staff:test",
        reason="hide digits from this tenant",
    )


def _requests(digit_rows):
    row = digit_rows[:1].tolist()
    return {
        "v1": lambda name, extra=None: (
            f"/v1/models/{name}/predict",
            {"instances": row, "purpose": "research", **(extra or {})},
        ),
        "jobs": lambda name, extra=None: (
            "/v1/jobs",
            {"model": name, "instances": row, "purpose": "research", **(extra or {})},
        ),
    }


@pytest.fixture(params=["allow-list", "policy"])
def hidden_caller(request, make_caller):
    if request.param == "allow-list":
        return make_caller(models=["other-model"]), "api_key.allowed_models"
    caller = make_caller(slug="hidden-by-policy")
    _hide_by_policy("hidden-by-policy")
    return caller, "no-digits"


@pytest.mark.parametrize("surface", ["v1", "jobs"])
@pytest.mark.parametrize("version", [None, 99])
def test_hidden_model_answers_like_a_missing_one_and_the_denial_is_audited(
    client, digits, digit_rows, hidden_caller, surface, version
):
    caller, rule = hidden_caller
    build = _requests(digit_rows)[surface]
    extra = {"version": version} if version else None
    answers = {}
    for name in ("digits", "digits-that-does-not-exist"):
        path, body = build(name, extra)
        answers[name] = client.post(path, data=json.dumps(body), content_type="application/json", **caller.headers)
    assert_problem(answers["digits"], 404, "model_not_found")
    hidden, missing = _body(answers["digits"]), _body(answers["digits-that-does-not-exist"])
    assert hidden == {**missing, "detail": missing["detail"].replace("digits-that-does-not-exist", "digits")}
    if version is None:
        row = AuditEvent.objects.get(request_id=answers["digits"]["X-Request-ID"])
        assert row.decision == "deny" and row.rule_id.endswith(rule) and row.error_code == "model_not_found"


@pytest.mark.parametrize("tensor_name", ["pixels", "not-the-input-name"])
def test_v2_infer_hides_the_model_too(client, digits, digit_rows, hidden_caller, tensor_name):
    """Even a tensor the model would refuse gets the missing-model answer: the decision comes first."""
    caller, rule = hidden_caller
    tensor = {"name": tensor_name, "shape": [1, 64], "datatype": "FP32", "data": digit_rows[0].tolist()}
    body = json.dumps({"inputs": [tensor], "parameters": {"purpose": "research"}})
    hidden = client.post("/v2/models/digits/infer", data=body, content_type="application/json", **caller.headers)
    missing = client.post("/v2/models/nope/infer", data=body, content_type="application/json", **caller.headers)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"] == missing.json()["error"].replace("'nope'", "'digits'")
    assert AuditEvent.objects.get(request_id=hidden["X-Request-ID"]).rule_id.endswith(rule)


def test_a_kill_switch_stays_a_visible_refusal(client, digits, make_caller, digit_rows):
    """A kill switch is a temporary, named refusal of a model the caller may otherwise use (documented)."""
    from policy.services import kill_switch_engage

    caller = make_caller()
    kill_switch_engage(target_type="model", target="digits", reason="incident", actor="staff:test")
    body = json.dumps({"instances": digit_rows[:1].tolist(), "purpose": "research"})
    response = client.post("/v1/models/digits/predict", data=body, content_type="application/json", **caller.headers)
    assert assert_problem(response, 403, "policy_denied")["rule_id"] == "kill_switch/model"


@pytest.mark.parametrize("path", ["/v1/models/{}", "/v2/models/{}", "/v2/models/{}/ready"])
def test_metadata_of_a_hidden_model_answers_like_a_missing_one_and_records_the_rule(
    client, digits, hidden_caller, path
):
    caller, rule = hidden_caller
    hidden = client.get(path.format("digits"), **caller.headers)
    missing = client.get(path.format("nope"), **caller.headers)
    assert hidden.status_code == missing.status_code == 404
    assert json.dumps(_body(hidden)).replace("digits", "nope") == json.dumps(_body(missing))
    assert AuditEvent.objects.get(request_id=hidden["X-Request-ID"]).rule_id.endswith(rule)
    assert AuditEvent.objects.get(request_id=missing["X-Request-ID"]).rule_id == ""
