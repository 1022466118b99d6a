"""REST v1 through the governed pipeline (in-process client; real servers in test_e2e)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audit.models import AuditEvent
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

PREDICT = "/v1/models/digits/predict"


def post(client, path, body, caller=None, **extra):
    headers = caller.headers if caller else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, data=data, content_type=extra.pop("content_type", "application/json"), **headers, **extra)


def test_predict_answers_every_instance_and_audits_once(client, digits, make_caller, digit_rows):
    caller = make_caller()
    rows = digit_rows[:3].tolist()
    response = post(client, PREDICT, {"instances": rows, "purpose": "research"}, caller)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model"] == "digits" and body["version"] == digits.version
    assert body["request_id"] == response["X-Request-ID"]
    assert len(body["predictions"]) == 3
    for prediction in body["predictions"]:
        assert len(prediction["probabilities"]) == 10
        assert prediction["label"] == int(np.argmax(prediction["probabilities"]))
        assert isinstance(prediction["needs_review"], bool)
    assert [p["label"] for p in body["predictions"]] == [0, 1, 2]
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(response.headers)
    events = AuditEvent.objects.filter(request_id=body["request_id"])
    assert events.count() == 1
    event = events.get()
    assert event.http_status == 200 and event.units == 3 and event.decision == "allow"
    assert event.key_prefix == caller.prefix and event.tenant_slug == caller.tenant.slug
    assert event.model_sha256 == digits.sha256 and event.policy_versions
    assert len(event.input_digest) == 64 and event.raw_input is None
    assert caller.key not in json.dumps(event.detail) + event.actor


# Transactional, as in production between requests: inside a test transaction autocommit is off, and
# close_old_connections() drops such a connection (Django "doesn't take chances" with it).
@pytest.mark.django_db(transaction=True)
def test_a_warm_governed_prediction_sends_one_statement_the_audit_insert(
    client, digits, make_caller, digit_rows, django_assert_num_queries, settings, redis_clean, monkeypatch
):
    """With quotas in Redis, the database sees exactly one statement per request (no health check SELECT 1)."""
    from django.db import close_old_connections, connections

    settings.INVALIDATION_CHECK_SECONDS = 3600  # the once-a-second generation read is not per request
    caller = make_caller()
    body = {"instances": digit_rows[:1].tolist(), "purpose": "research"}
    assert post(client, PREDICT, body, caller).status_code == 200  # warms caches, writes last_used_at
    # The test client disconnects close_old_connections from the request signals, and is_usable()
    # sends its SELECT 1 outside the query log; so run the request-boundary hook by hand and count
    # is_usable() itself.  The real connection class, not the ``connection`` proxy, holds the method.
    backend = type(connections["default"])
    real_is_usable = backend.is_usable
    checks: list[object] = []

    def counted_is_usable(self):
        checks.append(self)
        return real_is_usable(self)

    monkeypatch.setattr(backend, "is_usable", counted_is_usable)
    close_old_connections()
    checks.clear()  # only the second request is measured
    with django_assert_num_queries(1) as captured:
        assert post(client, PREDICT, body, caller).status_code == 200
    assert captured.captured_queries[0]["sql"].startswith('INSERT INTO "audit_auditevent"')
    assert checks == []


def test_version_can_be_pinned_and_unknown_version_is_404(client, digits, make_caller, digit_rows):
    caller = make_caller()
    ok = post(client, PREDICT, {"instances": digit_rows[:1].tolist(), "version": digits.version}, caller)
    assert ok.status_code == 200
    assert_problem(
        post(client, PREDICT, {"instances": digit_rows[:1].tolist(), "version": 99}, caller),
        404,
        "model_version_not_found",
    )


def test_listing_and_detail_show_callable_models(client, digits, make_caller):
    caller = make_caller()
    listing = client.get("/v1/models", **caller.headers)
    assert listing.status_code == 200
    (model,) = listing.json()["models"]
    assert model["name"] == "digits" and model["version"] == digits.version
    assert model["signature"] and model["provider"] and model["risk_tier"] and model["region"]
    detail = client.get("/v1/models/digits", **caller.headers).json()
    assert detail["labels"] == list(range(10)) and "model_card" in detail
    assert_problem(client.get("/v1/models/nope", **caller.headers), 404, "model_not_found")


def test_key_allow_list_hides_model_from_listing_and_predict(client, digits, make_caller, digit_rows):
    caller = make_caller(models=["other-model"])
    assert client.get("/v1/models", **caller.headers).json()["models"] == []
    response = post(client, PREDICT, {"instances": digit_rows[:1].tolist()}, caller)
    assert_problem(response, 404, "model_not_found")
    assert AuditEvent.objects.get(request_id=response["X-Request-ID"]).rule_id == "api_key.allowed_models"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"HTTP_AUTHORIZATION": "Bearer maas_nope.nope"}, "invalid_api_key"),
        ({"HTTP_X_API_KEY": "garbage"}, "invalid_api_key"),
    ],
)
def test_authentication_failures_are_401_and_audited(client, digits, headers, code):
    response = client.post(PREDICT, data="{}", content_type="application/json", **headers)
    assert_problem(response, 401, code)
    assert "Bearer" in response["WWW-Authenticate"]
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert event.http_status == 401 and event.error_code == code


def test_missing_scope_is_403(client, digits, make_caller, digit_rows):
    caller = make_caller(scopes=["usage:read"])
    assert_problem(post(client, PREDICT, {"instances": digit_rows[:1].tolist()}, caller), 403, "insufficient_scope")


def _bad_bodies(width: int = 64) -> list[tuple[str, object, int, str]]:
    row = [1.0] * width
    return [
        ("malformed json", "{not json", 400, "malformed_request"),
        # json.loads raises RecursionError (not ValueError) for this: it was a 500.
        ("deeply nested", "[" * 100000, 400, "malformed_request"),
        ("not an object", "[1, 2]", 400, "malformed_request"),
        ("empty body", "", 400, "malformed_request"),
        ("missing instances", {"purpose": "research"}, 400, "invalid_input"),
        ("instances not a list", {"instances": "abc"}, 400, "invalid_input"),
        ("empty batch", {"instances": []}, 400, "invalid_input"),
        ("instance not a list", {"instances": [5]}, 400, "invalid_input"),
        ("wrong width", {"instances": [row[:12]]}, 400, "invalid_input"),
        ("ragged batch", {"instances": [row, row[:3]]}, 400, "invalid_input"),
        ("strings", {"instances": [["a"] * width]}, 400, "invalid_input"),
        ("booleans", {"instances": [[True] * width]}, 400, "invalid_input"),
        ("nan", '{"instances": [[' + ",".join(["NaN"] + ["1"] * (width - 1)) + "]]}", 400, "invalid_input"),
        ("infinity", '{"instances": [[' + ",".join(["Infinity"] + ["1"] * (width - 1)) + "]]}", 400, "invalid_input"),
        ("out of range", {"instances": [[1e9] * width]}, 400, "invalid_input"),
        ("unknown field", {"instances": [row], "colour": "red"}, 400, "invalid_input"),
        ("bad version", {"instances": [row], "version": "two"}, 400, "invalid_input"),
        ("bad purpose", {"instances": [row], "purpose": 5}, 400, "invalid_input"),
    ]


@pytest.mark.parametrize(("case", "body", "status", "code"), _bad_bodies(), ids=[c[0] for c in _bad_bodies()])
def test_bad_input_is_a_clear_4xx_and_consumes_nothing(
    client, digits, make_caller, digit_rows, case, body, status, code
):
    caller = make_caller(daily_instances=2)
    response = post(client, PREDICT, body, caller)
    problem = assert_problem(response, status, code)
    assert problem["detail"]
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert event.units == 0 and event.http_status == status
    # nothing was consumed: the whole daily quota of 2 is still available
    assert post(client, PREDICT, {"instances": digit_rows[:2].tolist()}, caller).status_code == 200


def test_wrong_width_names_instance_and_expected_width(client, digits, make_caller):
    caller = make_caller()
    row = [1.0] * 64
    problem = assert_problem(post(client, PREDICT, {"instances": [row, row, row[:5]]}, caller), 400, "invalid_input")
    assert "2" in problem["detail"] and "64" in problem["detail"]


def test_oversized_batch_and_body(client, digits, make_caller):
    caller = make_caller(max_batch=4, max_body_bytes=2048)
    row = [1.0] * 64
    assert_problem(post(client, PREDICT, {"instances": [row] * 5}, caller), 400, "batch_too_large")
    big = json.dumps({"instances": [row] * 4, "pad": "x" * 3000})
    assert_problem(post(client, PREDICT, big, caller), 413, "payload_too_large")


def test_declared_content_length_is_checked_before_the_body_is_read(client, digits, make_caller, digit_rows):
    caller = make_caller(max_body_bytes=2048)
    body = json.dumps({"instances": digit_rows[:1].tolist()})
    assert_problem(post(client, PREDICT, body, caller, CONTENT_LENGTH="4096"), 413, "payload_too_large")
    # "²" passes isdigit() but int() refuses it (so does Django when it reads the body): 400, not 500.
    assert_problem(post(client, PREDICT, body, caller, CONTENT_LENGTH="²"), 400, "malformed_request")


def test_wrong_content_type_and_method(client, digits, make_caller):
    caller = make_caller()
    response = client.post(PREDICT, data="instances=1", content_type="text/plain", **caller.headers)
    assert_problem(response, 415, "unsupported_media_type")
    assert_problem(client.get(PREDICT, **caller.headers), 405, "method_not_allowed")
    assert_problem(client.delete("/v1/models", **caller.headers), 405, "method_not_allowed")


def test_unknown_model_is_404(client, digits, make_caller):
    caller = make_caller()
    assert_problem(post(client, "/v1/models/nope/predict", {"instances": [[1.0] * 64]}, caller), 404, "model_not_found")


def test_audit_failure_means_503_and_nothing_served(client, digits, make_caller, monkeypatch, digit_rows):
    from audit.errors import AuditUnavailable
    from gateway import pipeline

    def broken(**fields):
        raise AuditUnavailable("The audit trail could not record this request; nothing was served.")

    caller = make_caller(daily_instances=5)
    monkeypatch.setattr(pipeline, "audit_request_record", broken)
    response = post(client, PREDICT, {"instances": digit_rows[:5].tolist()}, caller)
    body = assert_problem(response, 503, "audit_unavailable")
    assert "predictions" not in body
    monkeypatch.undo()
    # the reservation was refunded: the whole daily quota is still there
    assert post(client, PREDICT, {"instances": digit_rows[:5].tolist()}, caller).status_code == 200


def test_quota_exceeded_is_429_with_retry_after_and_refunds_failures(client, digits, make_caller, digit_rows):
    caller = make_caller(daily_instances=4)
    assert post(client, PREDICT, {"instances": digit_rows[:3].tolist()}, caller).status_code == 200
    refused = post(client, PREDICT, {"instances": digit_rows[:2].tolist()}, caller)
    problem = assert_problem(refused, 429, "quota_exceeded")
    assert int(refused["Retry-After"]) > 0 and problem["limit"] == "daily"
    assert post(client, PREDICT, {"instances": digit_rows[:1].tolist()}, caller).status_code == 200


def test_policy_denial_is_403_with_rule_and_audited(client, digits, make_caller, digit_rows):
    from policy.services import kill_switch_engage

    caller = make_caller()
    kill_switch_engage(target_type="model", target="digits", reason="incident 42", actor="staff:test")
    response = post(client, PREDICT, {"instances": digit_rows[:1].tolist()}, caller)
    body = assert_problem(response, 403, "policy_denied")
    assert body["rule_id"]
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert event.decision == "deny" and event.rule_id == body["rule_id"] and event.units == 0


def test_low_confidence_predictions_are_flagged_for_review(client, digits, make_caller, digit_rows):
    from policy.models import ReviewItem
    from policy.services import policy_create

    strict, relaxed = make_caller(slug="strict"), make_caller(slug="relaxed")
    policy_create(
        name="tenant:strict",
        scope="tenant",
        tenant_slug="strict",
        actor="staff:test",
        reason="review everything",
        document=[{"id": "review-all", "type": "human_oversight", "mode": "enforce", "params": {"threshold": 1.0}}],
    )
    body = {"instances": [[8.0] * 64, digit_rows[0].tolist()], "purpose": "research"}
    flagged = post(client, PREDICT, body, strict)
    assert flagged.status_code == 200
    assert [p["needs_review"] for p in flagged.json()["predictions"]] == [True, True]
    assert AuditEvent.objects.get(request_id=flagged["X-Request-ID"]).needs_review is True
    assert ReviewItem.objects.filter(request_id=flagged["X-Request-ID"]).count() == 2
    # One item per flagged instance, told apart by its index, with the rounded probability vector.
    items = list(ReviewItem.objects.filter(request_id=flagged["X-Request-ID"]).order_by("instance_index"))
    assert [item.instance_index for item in items] == [0, 1]
    answered = flagged.json()["predictions"]
    for item, prediction in zip(items, answered, strict=True):
        assert len(item.probabilities) == 10
        assert all(p == round(p, 4) for p in item.probabilities)
        assert item.probabilities == pytest.approx(prediction["probabilities"], abs=1e-4)
    # the baseline threshold (0.6) does not flag a confident prediction
    confident = post(client, PREDICT, {"instances": [digit_rows[0].tolist()], "purpose": "research"}, relaxed)
    assert confident.json()["predictions"][0]["needs_review"] is False
    assert not ReviewItem.objects.filter(request_id=confident["X-Request-ID"]).exists()


def test_answers_carry_the_policy_versions_and_obligations_that_decided_them(client, digits, make_caller, digit_rows):
    from policy.services import policy_create

    strict, plain = make_caller(slug="strict"), make_caller(slug="plain")
    policy_create(
        name="tenant:strict",
        scope="tenant",
        tenant_slug="strict",
        actor="staff:test",
        reason="review everything, keep inputs a week",
        document=[
            {"id": "review-all", "type": "human_oversight", "mode": "enforce", "params": {"threshold": 1.0}},
            {
                "id": "keep",
                "type": "data_minimisation",
                "mode": "enforce",
                "params": {"retain_raw_input": True, "retention_days": 7},
            },
        ],
    )
    body = {"instances": [digit_rows[0].tolist()], "purpose": "research"}
    response = post(client, PREDICT, body, strict)
    assert response.status_code == 200
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    facts = response.json()["decision"]
    assert facts["policy_versions"] == event.policy_versions.split(",")
    assert any(v.startswith("tenant:strict@") for v in facts["policy_versions"])
    assert {"type": "human_review", "threshold": 1.0} in facts["obligations"]
    assert {"type": "data_minimisation", "raw_input": "retained", "retention_days": 7} in facts["obligations"]
    assert response["X-Policy-Versions"] == event.policy_versions
    assert "human_review;threshold=1.0" in response["X-Obligations"]
    assert "data_minimisation;raw_input=retained;retention_days=7" in response["X-Obligations"]

    other = post(client, PREDICT, body, plain)
    assert other["X-Obligations"].endswith("data_minimisation;raw_input=discarded")
    assert "tenant:strict" not in other["X-Policy-Versions"]  # nothing about another tenant's policies
    # A denial says who decided it too.
    from policy.services import kill_switch_engage

    kill_switch_engage(target_type="tenant", target="plain", reason="incident 43", actor="staff:test")
    denied = post(client, PREDICT, body, plain)
    assert_problem(denied, 403, "policy_denied")
    decided_by = AuditEvent.objects.get(request_id=denied["X-Request-ID"]).policy_versions
    assert denied["X-Policy-Versions"] == (decided_by or "none") and denied["X-Obligations"]


def test_model_detail_lists_the_card_of_each_version_the_key_may_use(client, digits, make_caller, onnx_bytes):
    from inference.services import model_version_activate, model_version_register, model_version_update
    from policy.services import policy_create
    from tests.inference.factories import COMPLETE_CARD

    second = model_version_register(name="digits", data=onnx_bytes, actor="test", card={"limitations": "v2 only"})
    model_version_activate(version=second, actor="test")
    model_version_register(name="digits", data=onnx_bytes, actor="test")  # staged: never served, never listed
    model_version_update(version=digits, actor="test", risk_tier="high", card=COMPLETE_CARD)
    caller, limited = make_caller("everything"), make_caller("limited")
    body = client.get("/v1/models/digits", **caller.headers).json()
    assert [card["version"] for card in body["model_cards"]] == [1, 2]
    first, current = body["model_cards"]
    assert first["risk_tier"] == "high" and first["risk_rationale"] == COMPLETE_CARD["risk_rationale"]
    assert current["limitations"] == "v2 only" and current["reference_profile"] is None
    assert set(current) >= {"intended_purpose", "out_of_scope_uses", "training_data", "metrics_per_class"}
    rule = {"id": "tier", "type": "model_access", "mode": "enforce", "params": {"max_risk_tier": "limited"}}
    policy_create(name="limited", document=[rule], actor="test", reason="t", scope="tenant", tenant_slug="limited")
    body = client.get("/v1/models/digits", **limited.headers).json()
    assert [card["version"] for card in body["model_cards"]] == [2]  # the high-risk version is not for this tenant
