"""``static_collect``: collects when the copy is stale, skips when it is current, one process at a time."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from gateway import static_collect as module
from gateway.static_collect import MANIFEST, static_collect, static_files_current


@pytest.fixture
def sources(settings, tmp_path) -> Path:
    """One source directory and a fresh STATIC_ROOT, with the manifest storage (compression is not the point)."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "site.css").write_text("body { color: black; }\n")
    settings.STATICFILES_DIRS = [str(source)]
    settings.STATICFILES_FINDERS = ["django.contrib.staticfiles.finders.FileSystemFinder"]
    settings.STATIC_ROOT = str(tmp_path / "static")
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
    return source


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_collects_once_then_skips_until_a_source_changes(sources, settings):
    _age(sources / "site.css", 60)
    assert not static_files_current()
    assert static_collect() is True
    root = Path(settings.STATIC_ROOT)
    assert (root / MANIFEST).exists() and list(root.glob("site.*.css"))
    assert static_collect() is False  # current: nothing is hashed again

    (sources / "site.css").write_text("body { color: navy; }\n")  # an edit is newer than the manifest
    assert not static_files_current()
    assert static_collect() is True
    assert static_collect(force=True) is True  # forced even when current


def test_a_new_source_file_makes_the_copy_stale(sources):
    _age(sources / "site.css", 60)
    static_collect()
    (sources / "extra.js").write_text("console.log(1);\n")
    assert not static_files_current()


def test_a_missing_or_deleted_manifest_is_stale(sources, settings):
    _age(sources / "site.css", 60)
    static_collect()
    (Path(settings.STATIC_ROOT) / MANIFEST).unlink()
    assert static_collect() is True


def test_concurrent_callers_collect_once(sources, monkeypatch):
    """Two processes sharing a root (test workers, a benchmark): the second waits, then finds it current."""
    _age(sources / "site.css", 60)
    real = module.call_command
    calls: list[str] = []

    def slow_collect(*args, **kwargs):
        calls.append(args[0])
        time.sleep(0.3)  # long enough for the other caller to reach the lock
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "call_command", slow_collect)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(static_collect())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False, True]
    assert calls == ["collectstatic"]
