"""Fixtures of the protocol-surface tests: the environment of real server and worker processes.

Callers (``make_caller``), the served ``digits`` model and ``digit_rows`` come
from the shared plugin ``tests/fixtures/callers.py``.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def env(settings, tmp_path, model_store) -> dict[str, str]:
    """Environment for real server and worker processes: this test's model store and jobs directory."""
    settings.JOBS_DIR = str(tmp_path / "jobs")
    return {
        "MODEL_STORE_DIR": str(model_store),
        "JOBS_DIR": settings.JOBS_DIR,
        "JOB_CHUNK_SIZE": "500",
        "LOG_LEVEL": "WARNING",
    }
