"""Fixtures of the inference tests: a private model store per test, registration and fake training.

The session-wide ``trained`` and ``onnx_bytes`` fixtures (the default
training, run once because TensorFlow costs seconds) live in
``tests/conftest.py`` so that every app's tests share one trained model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from inference.models import ModelVersion


@pytest.fixture(autouse=True)
def _private_model_store(model_store):
    """Every inference test gets the root ``model_store`` (an empty store, no cached sessions)."""
    return model_store


@pytest.fixture
def spec(tmp_path, onnx_bytes):
    """A runtime spec of the session's model in a private directory (no database)."""
    from inference.runtime import ModelSpec
    from inference.store import sha256_bytes, write_model_file

    path = write_model_file(store_dir=tmp_path / "loose", name="digits", version=1, data=onnx_bytes)
    return ModelSpec(
        name="digits",
        version=1,
        path=str(path),
        sha256=sha256_bytes(onnx_bytes),
        file_size=len(onnx_bytes),
        input_name="pixels",
        output_name="probabilities",
        input_width=64,
        value_min=0.0,
        value_max=16.0,
        labels=tuple(range(10)),
        risk_tier="limited",
        region="eu",
    )


@pytest.fixture
def served(spec):
    """The session's model loaded by the runtime, as the gateway would serve it."""
    from inference.runtime import CPU_PROVIDER, load_model

    return load_model(spec, providers=[CPU_PROVIDER])


@pytest.fixture
def register(onnx_bytes) -> Callable[..., ModelVersion]:
    """Register the session's ONNX file as the next version of a model (staged unless ``activate``)."""
    from inference.services import model_version_activate, model_version_register

    def _register(name: str = "digits", *, activate: bool = False, **fields: Any) -> ModelVersion:
        version = model_version_register(name=name, data=fields.pop("data", onnx_bytes), actor="test", **fields)
        if activate:
            version = model_version_activate(version=version, actor="test")
        return version

    return _register


@pytest.fixture
def fake_training(monkeypatch, trained):
    """Make ``training.train_model`` return the session's result instantly (commands, tasks, services)."""
    from inference import training

    calls: list[Any] = []

    def _train(config=None, *, progress=None):
        calls.append(config)
        if progress is not None:
            for epoch in (1, 2):
                progress(training.EpochProgress(epoch=epoch, epochs=2, loss=0.5 / epoch, accuracy=0.9, elapsed=0.1))
        return trained

    monkeypatch.setattr(training, "train_model", _train)
    return calls
