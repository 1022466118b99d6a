"""Fixtures for the protocol surfaces: a served model and tenants with keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from tenants.services import api_key_cache_clear, api_key_create, tenant_create, tenant_quota_set


@dataclass
class Caller:
    """A tenant with one raw API key."""

    tenant: object
    key: str
    prefix: str

    @property
    def headers(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.key}"}

    @property
    def http_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def digits(model_store, onnx_bytes):
    """The session's model registered and active as ``digits`` v1."""
    from inference.services import model_version_activate, model_version_register

    version = model_version_register(name="digits", data=onnx_bytes, actor="test")
    return model_version_activate(version=version, actor="test")


@pytest.fixture
def make_caller() -> Callable[..., Caller]:
    """Create a tenant (region eu, verified, research purpose) and a key; overrides set quotas."""
    api_key_cache_clear()
    counter = {"n": 0}

    def _make(
        slug: str | None = None,
        *,
        scopes: list[str] | None = None,
        models: list[str] | None = None,
        region: str = "eu",
        verified: bool = True,
        purposes: list[str] | None = None,
        **quota: object,
    ) -> Caller:
        counter["n"] += 1
        tenant = tenant_create(
            slug=slug or f"tenant-{counter['n']}",
            actor="test",
            region=region,
            identity_verified=verified,
            approved_purposes=purposes if purposes is not None else ["research"],
        )
        if quota:
            tenant = tenant_quota_set(tenant=tenant, actor="test", overrides=quota)
        issued = api_key_create(tenant=tenant, actor="test", scopes=scopes, allowed_models=models)
        return Caller(tenant=tenant, key=issued.raw_key, prefix=issued.key.prefix)

    yield _make
    api_key_cache_clear()


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


@pytest.fixture(scope="session")
def digit_rows() -> np.ndarray:
    """Real handwritten digits (raw 0..16 pixel values) and nothing else."""
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)
