"""``Server-Timing`` on governed answers: every step measured, only for authenticated callers, switchable."""

from __future__ import annotations

import json

import pytest

from gateway.pipeline import TIMED_STEPS

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _timings(response) -> dict[str, float]:
    entries = {}
    for part in response["Server-Timing"].split(","):
        name, _, duration = part.strip().partition(";dur=")
        entries[name] = float(duration)
    return entries


def _predict(client, caller, rows):
    return client.post(
        "/v1/models/digits/predict",
        json.dumps({"instances": rows.tolist()}),
        content_type="application/json",
        **caller.headers,
    )


def test_a_prediction_reports_every_step_and_a_total_that_covers_them(client, digits, make_caller, digit_rows):
    response = _predict(client, make_caller(), digit_rows[:2])
    assert response.status_code == 200
    timings = _timings(response)
    # "shadow" appears only while a rollout runs a shadow (tests/gateway/test_rollouts.py).
    assert list(timings) == [*(step for step in TIMED_STEPS if step != "shadow"), "total"]
    assert all(value >= 0 for value in timings.values())
    assert sum(value for name, value in timings.items() if name != "total") <= timings["total"]


def test_a_refusal_after_authentication_reports_the_steps_it_reached(client, digits, make_caller, digit_rows):
    caller = make_caller(scopes=["jobs"])
    response = _predict(client, caller, digit_rows[:1])
    assert response.status_code == 403
    assert list(_timings(response)) == ["auth", "audit", "total"]


def test_no_timing_for_a_caller_without_a_valid_key(client, digits, digit_rows):
    """Timing the key lookup of a wrong key would tell an attacker something; nothing is reported."""
    response = client.post(
        "/v1/models/digits/predict",
        json.dumps({"instances": digit_rows[:1].tolist()}),
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer mk_nothing_here",
    )
    assert response.status_code == 401
    assert "Server-Timing" not in response


def test_the_header_can_be_switched_off(client, digits, make_caller, digit_rows, settings):
    settings.SERVER_TIMING = False
    response = _predict(client, make_caller(), digit_rows[:1])
    assert response.status_code == 200
    assert "Server-Timing" not in response


def test_other_governed_endpoints_report_it_too(client, digits, make_caller):
    caller = make_caller(scopes=["usage:read", "predict"])
    for path in ("/v1/usage", "/v1/models"):
        response = client.get(path, **caller.headers)
        assert response.status_code == 200, path
        assert list(_timings(response)) == ["auth", "audit", "total"], path
