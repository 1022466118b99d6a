"""The environment reader: safe defaults, clear errors, production secrets required."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from core import env
from tests.support import ROOT

pytestmark = pytest.mark.embedded


def test_bool_parsing(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    assert env.env_bool("X_FLAG") is True
    monkeypatch.setenv("X_FLAG", "off")
    assert env.env_bool("X_FLAG", True) is False
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env.env_bool("X_FLAG")


def test_int_error_names_variable(monkeypatch):
    monkeypatch.setenv("X_NUM", "ten")
    with pytest.raises(ImproperlyConfigured, match="X_NUM"):
        env.env_int("X_NUM", 1)


def test_production_without_secret_key_fails_at_startup(tmp_path):
    environ = {"DJANGO_ENV": "production", "MAAS_VAR_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='gateway.settings'; django.setup()",
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DJANGO_ENV=production" in result.stderr


def test_embedded_secret_generated_once(tmp_path, monkeypatch):
    monkeypatch.delenv("SOME_SECRET", raising=False)
    monkeypatch.setattr(env, "VAR_DIR", tmp_path)
    first = env.secret_from_env_or_file("SOME_SECRET", "some-secret")
    assert first == env.secret_from_env_or_file("SOME_SECRET", "some-secret")
    assert len(first) >= 32


def _embedded_setting(tmp_path, expression: str, **extra: str) -> subprocess.CompletedProcess:
    environ = {"MAAS_VAR_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", **extra}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='gateway.settings'; django.setup();"
            f"from django.conf import settings; print({expression})",
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sqlite_syncs_every_commit_unless_told_otherwise(tmp_path):
    expression = "settings.DATABASES['default']['OPTIONS']['init_command']"
    assert "synchronous=FULL" in _embedded_setting(tmp_path, expression).stdout
    assert "synchronous=NORMAL" in _embedded_setting(tmp_path, expression, SQLITE_SYNCHRONOUS="normal").stdout
    refused = _embedded_setting(tmp_path, expression, SQLITE_SYNCHRONOUS="off")
    assert refused.returncode != 0
    assert "SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA" in refused.stderr


def test_short_monitoring_windows_and_fast_broker_polling_are_configurable(tmp_path):
    # The end-to-end supervision test runs on two-second windows, and its beat sends a task more often than
    # kombu's default filesystem polling (one look a second) would take them.
    expression = "settings.MONITORING_WINDOW_SECONDS, settings.CELERY_BROKER_TRANSPORT_OPTIONS['polling_interval']"
    short = _embedded_setting(tmp_path, expression, MONITORING_WINDOW_SECONDS="2", CELERY_BROKER_POLLING_SECONDS="0.1")
    assert short.stdout.split() == ["2", "0.1"], short.stderr
