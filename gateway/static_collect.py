"""``collectstatic`` only when the collected copy is stale, one process at a time.

WhiteNoise's manifest storage hashes and compresses (gzip and Brotli) every
admin and Swagger file on every ``collectstatic``, changed or not: 30 to 100
seconds on a busy two-core machine, paid by every ``make run``, ``make bench``
and test session although the files change only with a release.  The copy is
current when its manifest is newer than every source file, which holds across
``git clone`` (sources get the clone's time) and notices any edited file.

Several processes may share one ``STATIC_ROOT`` (test workers, a benchmark
next to the server it measures): an exclusive ``flock`` beside the root makes
the second wait for the first and then find the copy current, instead of both
writing the same files at once.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.finders import get_finders
from django.core.management import call_command

MANIFEST = "staticfiles.json"


def static_sources_newest() -> float:
    """The newest modification time among the files ``collectstatic`` would copy (0 when there are none)."""
    return max(
        (Path(storage.path(name)).stat().st_mtime for finder in get_finders() for name, storage in finder.list([])),
        default=0.0,
    )


def static_files_current(*, root: Path | None = None) -> bool:
    """True when ``root`` (``STATIC_ROOT``) holds a manifest newer than every source file."""
    manifest = Path(root or settings.STATIC_ROOT) / MANIFEST
    try:
        collected = manifest.stat().st_mtime
    except FileNotFoundError:
        return False
    return collected > static_sources_newest()


@contextmanager
def _root_locked(root: Path) -> Iterator[None]:
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def static_collect(*, force: bool = False) -> bool:
    """Collect the static files into ``STATIC_ROOT`` unless they are current; True when it collected.

    ``force`` collects anyway (a storage setting changed, or a file was
    replaced by an older one, which a modification time cannot show).
    """
    root = Path(settings.STATIC_ROOT)
    with _root_locked(root):
        if not force and static_files_current(root=root):
            return False
        call_command("collectstatic", interactive=False, verbosity=0)
        return True
