"""Served-model lookup, fallback to the last good version, hot activation, catalog and readiness."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from core.invalidation import clock
from inference import selectors
from inference.errors import ModelNotFound, ModelUnavailable, ModelVersionNotFound
from inference.runtime import sessions
from inference.selectors import (
    model_catalog_list,
    model_detail_get,
    model_readiness,
    model_serving_get,
    serving_caches_clear,
)
from inference.services import model_version_activate, model_version_retire
from policy.evaluator import ModelFacts
from tests.inference.factories import COMPLETE_CARD
from tests.support import ROOT, server_env

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _corrupt(version) -> None:
    path = version.absolute_path()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_unknown_names_and_versions():
    with pytest.raises(ModelNotFound, match="No model named 'nope'"):
        model_serving_get(name="nope")
    with pytest.raises(ModelNotFound):
        model_serving_get(name="nope", version=1)


def test_model_without_active_version_is_not_found(register):
    register()
    with pytest.raises(ModelNotFound, match="has no active version"):
        model_serving_get(name="digits")


def test_pinned_versions_must_have_been_activated_and_not_retired(register):
    register(activate=True)
    second = register(activate=True)
    register()
    assert model_serving_get(name="digits", version=1).version == 1
    with pytest.raises(ModelVersionNotFound, match="never been activated"):
        model_serving_get(name="digits", version=3)
    with pytest.raises(ModelVersionNotFound, match="has no version 9"):
        model_serving_get(name="digits", version=9)
    model_version_activate(version=model_serving_get_row(1), actor="test")
    model_version_retire(version=second, actor="test")
    clock.reset()
    with pytest.raises(ModelVersionNotFound, match="retired"):
        model_serving_get(name="digits", version=2)


def model_serving_get_row(number):
    from inference.models import ModelVersion

    return ModelVersion.objects.get(name="digits", version=number)


def test_one_session_per_version_per_process(register):
    register(activate=True)
    first = model_serving_get(name="digits")
    assert model_serving_get(name="digits") is first
    assert model_serving_get(name="digits", version=1) is first
    assert sessions.loaded() == [first]
    assert first.facts() == ModelFacts(name="digits", version=1, risk_tier="limited", region="eu")


def test_corrupted_new_version_is_refused_while_the_old_one_keeps_serving(register, caplog, trained):
    register(activate=True)
    old = model_serving_get(name="digits")
    new = register(activate=True)
    _corrupt(new)  # after activation verified it: a disk fault on this host
    clock.reset()
    with caplog.at_level(logging.ERROR, logger="inference"):
        served = model_serving_get(name="digits")
    assert served is old
    messages = [r.getMessage() for r in caplog.records]
    assert "model refused" in messages and "active model refused; serving the previously loaded version" in messages
    assert served.run(trained.dataset.x_test[:3]).shape == (3, 10)
    # A client pinning the broken version gets a 503 naming it, without server paths.
    with pytest.raises(ModelUnavailable, match="digits@2 is unavailable") as caught:
        model_serving_get(name="digits", version=2)
    assert str(new.absolute_path()) not in caught.value.detail
    report = model_readiness()
    assert report["version"] == 1 and "digits@2 failed verification" in report["degraded"]


def test_nothing_good_ever_loaded_means_model_unavailable(register):
    version = register(activate=True)
    version.absolute_path().unlink()
    with pytest.raises(ModelUnavailable, match="its model file is missing") as caught:
        model_serving_get(name="digits")
    assert caught.value.status == 503 and caught.value.code == "model_unavailable"
    with pytest.raises(ModelUnavailable):
        model_readiness()


def test_hot_activation_is_served_after_the_generation_check(register, trained, settings):
    # A long interval, so the generation read cannot fall due between the calls below.
    settings.INVALIDATION_CHECK_SECONDS = 3600
    register(activate=True)
    old = model_serving_get(name="digits")
    second = register()
    model_version_activate(version=second, actor="test")
    # Within the check interval the process still serves v1 (no query per request) ...
    assert model_serving_get(name="digits") is old
    assert old.version == 1
    clock.reset()  # ... and once the interval has passed it serves v2, without a restart.
    assert model_serving_get(name="digits").version == 2
    # A request that already holds v1 finishes normally.
    assert old.run(trained.dataset.x_test[:1]).shape == (1, 10)


@pytest.mark.django_db(transaction=True)
def test_hot_activation_reaches_another_process(register, model_store, settings):
    register(activate=True)
    second = register()
    script = (
        "import django, sys, time; django.setup()\n"
        "from inference.selectors import model_serving_get\n"
        "deadline = time.monotonic() + 30\n"
        "while time.monotonic() < deadline:\n"
        "    print(model_serving_get(name='digits').version, flush=True)\n"
        "    time.sleep(0.1)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=server_env(MODEL_STORE_DIR=str(model_store), INVALIDATION_CHECK_SECONDS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "1"
        model_version_activate(version=second, actor="test")
        for line in proc.stdout:
            if line.strip() == "2":
                break
        else:
            pytest.fail("the other process never served version 2")
    finally:
        proc.kill()
        proc.wait()


def test_warm_requests_do_not_choose_providers(register, monkeypatch):
    register(activate=True)
    first = model_serving_get(name="digits")
    calls: list[dict] = []
    real = selectors.select_providers

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(selectors, "select_providers", counting)
    for _ in range(3):
        assert model_serving_get(name="digits") is first
    assert calls == []


def test_unavailable_preferred_provider_is_logged_once_per_setting(register, settings, caplog):
    register(activate=True)
    settings.INFERENCE_PROVIDERS = ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING, logger="inference"):
        model = model_serving_get(name="digits")
        for _ in range(3):
            assert model_serving_get(name="digits") is model
            assert model_catalog_list()[0].provider == "CPUExecutionProvider"
    warnings = [r for r in caplog.records if "not available" in r.getMessage()]
    assert len(warnings) == 1


def test_provider_choice_follows_the_settings(register, settings, monkeypatch):
    import onnxruntime as ort

    register(activate=True)  # no session loaded: the catalog reports what a load would pick
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    settings.INFERENCE_PROVIDERS = []
    assert model_catalog_list()[0].provider == "CUDAExecutionProvider"
    settings.INFERENCE_PROVIDERS = ["CPUExecutionProvider"]
    assert model_catalog_list()[0].provider == "CPUExecutionProvider"


def test_catalog_lists_active_models_without_loading_sessions(register):
    register(activate=True)
    register(activate=True)
    register()
    register("other")  # no active version: not listed
    (info,) = model_catalog_list()
    assert (info.name, info.active_version, info.versions) == ("digits", 2, [1, 2])
    assert info.signature["inputs"][0]["name"] == "pixels"
    assert info.labels == list(range(10)) and (info.risk_tier, info.region) == ("limited", "eu")
    assert info.provider == "CPUExecutionProvider"
    assert info.facts() == ModelFacts(name="digits", version=2, risk_tier="limited", region="eu")
    assert sessions.loaded() == []
    assert model_detail_get(name="digits") == info
    with pytest.raises(ModelNotFound, match="has no active version"):
        model_detail_get(name="other")
    with pytest.raises(ModelNotFound, match="No model named"):
        model_detail_get(name="ghost")


def test_catalog_reports_the_loaded_provider(register, settings):
    register(activate=True)
    settings.INFERENCE_PROVIDERS = ["CPUExecutionProvider"]
    model_serving_get(name="digits")
    assert model_catalog_list()[0].provider == "CPUExecutionProvider"


def test_readiness_check_reports_default_model(register, settings, client):
    settings.DEFAULT_MODEL_NAME = "digits"
    settings.METRICS_TOKEN = "ops-token-for-tests"
    register(activate=True)
    report = model_readiness()
    assert report == {"name": "digits", "version": 1, "provider": "CPUExecutionProvider", "sha256": report["sha256"]}
    body = client.get("/readyz", HTTP_AUTHORIZATION="Bearer ops-token-for-tests").json()
    assert body["checks"]["model"]["status"] == "ok" and body["checks"]["model"]["version"] == 1


def test_readiness_fails_without_an_active_default_model(settings, client):
    settings.DEFAULT_MODEL_NAME = "digits"
    settings.METRICS_TOKEN = "ops-token-for-tests"
    serving_caches_clear()
    response = client.get("/readyz", HTTP_AUTHORIZATION="Bearer ops-token-for-tests")
    assert response.status_code == 503
    assert response.json()["checks"]["model"]["status"] == "fail"
    assert "No model named 'digits'" in response.json()["checks"]["model"]["error"]


def test_governance_update_reaches_served_facts_without_reloading(register):
    from inference.services import model_version_update

    version = register(activate=True)
    before = model_serving_get(name="digits")
    model_version_update(version=version, actor="test", risk_tier="high", region="cn", card=COMPLETE_CARD)
    clock.reset()
    after = model_serving_get(name="digits")
    assert after.facts() == ModelFacts(name="digits", version=1, risk_tier="high", region="cn")
    assert after.session is before.session
    clock.reset()
    assert model_serving_get(name="digits") is after


def test_retired_version_is_never_a_fallback(register):
    first = register(activate=True)
    model_serving_get(name="digits")
    second = register(activate=True)
    model_version_retire(version=first, actor="test")
    _corrupt(second)
    clock.reset()
    with pytest.raises(ModelUnavailable, match="digits@2 is unavailable"):
        model_serving_get(name="digits")
