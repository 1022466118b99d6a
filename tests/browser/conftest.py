"""Browser tests: Debian's Chromium driven by Playwright against a real gunicorn (the production command).

* Static files are collected once per session into the test ``var`` directory
  with the production storage (hashed, compressed); gunicorn serves them
  through WhiteNoise with ``DEBUG`` off, exactly as ``make run`` does.
* Every page runs in a fresh browser context whose requests to anything but
  loopback are aborted and recorded (``offsite``), so a test can prove no
  request left the machine.
* A failing test leaves a full-page screenshot under ``var/browser-failures/``;
  :func:`shot` saves the screens a test walks through under ``var/screenshots/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support import BIN, ROOT, gateway_server, server_env

CHROMIUM = Path("/usr/bin/chromium")
FAILURES_DIR = ROOT / "var" / "browser-failures"
SCREENSHOTS_DIR = ROOT / "var" / "screenshots"
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
VIEWPORT = {"width": 1366, "height": 768}


def pytest_collection_modifyitems(items):
    """Everything under tests/browser is a browser test (``-m "not browser"`` skips them)."""
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's outcome on the item, so the page fixture knows whether to take a screenshot."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def collected_static(django_db_setup, django_db_blocker) -> Path:
    """The static files collected with the production storage, as ``manage.py bootstrap`` collects them.

    ``make test`` has collected them already (its ``setup``), so this costs one
    freshness check; xdist workers share that root (``tests/parallel.py``).
    """
    from django.conf import settings

    with django_db_blocker.unblock():
        env = server_env()
    # A subprocess: this session's settings swap the manifest storage for the plain one.
    result = subprocess.run(
        [
            str(BIN / "python"),
            "manage.py",
            "shell",
            "-c",
            "from gateway.static_collect import static_collect; static_collect()",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return Path(settings.STATIC_ROOT)


@pytest.fixture
def live_server_url(collected_static, transactional_db, tmp_path) -> Iterator[str]:
    """A real gunicorn per test, production command, ``DEBUG`` off, this session's test database.

    Per test, not per module: each transactional test ends with a flush that
    recreates the content types under new ids, and a server kept across tests
    would write admin log entries against the ids it cached (a 500 that only
    shows up in some test orders).
    """
    env = {"DEBUG": "false", "MODEL_STORE_DIR": str(tmp_path / "models"), "JOBS_DIR": str(tmp_path / "jobs")}
    with gateway_server(workers=2, **env) as base:
        yield base


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's Chromium; never a downloaded browser."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between browser steps are ordinary synchronous code, so Django's async guard must not fire.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class OffsiteLog(list):
    """URLs of requests that tried to leave the machine (all aborted)."""


@pytest.fixture
def offsite() -> OffsiteLog:
    return OffsiteLog()


@pytest.fixture
def page(request, chromium, live_server_url, offsite):
    """A fresh context at 1366x768; off-machine requests are aborted and logged; screenshot on failure."""
    context = chromium.new_context(viewport=VIEWPORT, base_url=live_server_url, timezone_id="UTC")

    def guard(route):
        host = urlsplit(route.request.url).hostname or ""
        scheme = urlsplit(route.request.url).scheme
        if scheme in {"data", "blob", "about"} or host in LOOPBACK:
            route.continue_()
        else:
            offsite.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    failed = any(
        getattr(request.node, f"rep_{when}", None) and getattr(request.node, f"rep_{when}").failed
        for when in ("setup", "call")
    )
    if failed:
        FAILURES_DIR.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
        # A screenshot must never mask the real failure.
        with contextlib.suppress(Exception):
            tab.screenshot(path=str(FAILURES_DIR / f"{name}.png"), full_page=True)
    context.close()


def shot(page, name: str) -> Path:
    """Save a full-page screenshot of the current screen under ``var/screenshots/`` (for review and docs)."""
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def admin_login(page, username: str, password: str, *, next_path: str = "/admin/") -> None:
    """Sign in through the real login form."""
    page.goto(f"/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_load_state()


@pytest.fixture
def superuser(django_user_model):
    """A committed superuser the gunicorn process can authenticate."""
    return django_user_model.objects.create_superuser(username="root", password="pw-root-12345", email="")
