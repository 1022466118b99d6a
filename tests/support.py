"""Shared test helpers: the one problem+json assertion and real-process launchers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert ``response`` is an RFC 9457 problem with ``status`` and ``code``; return its body.

    Works for Django test-client responses and ``requests`` responses alike.
    """
    status_code = getattr(response, "status_code", None)
    assert status_code == status, f"expected {status}, got {status_code}: {_text(response)[:500]}"
    content_type = response.headers.get("Content-Type", "")
    assert content_type.startswith("application/problem+json"), content_type
    body = response.json()
    for field in ("type", "title", "status", "detail", "code", "request_id"):
        assert field in body, f"problem lacks {field!r}: {body}"
    assert body["status"] == status
    assert body["code"] == code, f"expected code {code!r}, got {body['code']!r}: {body}"
    assert body["request_id"], body
    assert "Traceback" not in _text(response)
    return body


def _text(response: Any) -> str:
    if hasattr(response, "text"):
        return response.text
    return response.content.decode(errors="replace")


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(**overrides: str) -> dict[str, str]:
    """Environment for child processes that must see the test database and settings."""
    env = dict(os.environ)
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        env["MAAS_SQLITE_PATH"] = str(settings_dict["NAME"])
        env.pop("DATABASE_URL", None)
    else:
        user = settings_dict.get("USER") or "postgres"
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        env["DATABASE_URL"] = f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"
    env["DJANGO_SETTINGS_MODULE"] = "gateway.settings"
    env["PYTHONUNBUFFERED"] = "1"
    # The checkpoint log belongs with the test database: a child that seals must see this test's log only.
    env["AUDIT_CHECKPOINT_DIR"] = str(settings.AUDIT_CHECKPOINT_DIR)
    # Every server a test starts sees the same address (127.0.0.1): failed authentications of earlier
    # tests must not throttle this one, so a child gets this test's limits (security tests set low ones).
    env["AUTH_FAILURE_LIMIT"] = str(settings.AUTH_FAILURE_LIMIT)
    env["AUTH_FAILURE_VERBATIM"] = str(settings.AUTH_FAILURE_VERBATIM)
    env.update(overrides)
    return env


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200, the process dies, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever remains."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextmanager
def gateway_server(workers: int = 2, **env_overrides: str) -> Iterator[str]:
    """Run real gunicorn workers on a free loopback port; yield the base URL."""
    port = free_port()
    log = open(ROOT / "var" / f"test-gunicorn-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "gateway.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--config",
            "python:gateway.gunicorn_conf",
        ],
        cwd=ROOT,
        env=server_env(**env_overrides),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", proc=proc)
        yield base
    finally:
        stop_process(proc)
        log.close()


@contextmanager
def celery_worker(concurrency: int = 1, **env_overrides: str) -> Iterator[subprocess.Popen]:
    """Run a real Celery worker process against the configured broker."""
    command = [
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    with _celery(command, **env_overrides) as proc:
        yield proc


@contextmanager
def celery_beat(schedule: Path, **env_overrides: str) -> Iterator[subprocess.Popen]:
    """Run real Celery beat (the production schedule of settings) with its state file at ``schedule``."""
    with _celery(["beat", "--loglevel", "INFO", "--schedule", str(schedule)], **env_overrides) as proc:
        yield proc


@contextmanager
def _celery(command: list[str], **env_overrides: str) -> Iterator[subprocess.Popen]:
    log = open(ROOT / "var" / f"test-celery-{os.getpid()}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / "celery"), "-A", "gateway", *command],
        cwd=ROOT,
        env=server_env(**env_overrides),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"celery {command[0]} exited with {proc.returncode}")
        yield proc
    finally:
        stop_process(proc, timeout=20)
        log.close()
