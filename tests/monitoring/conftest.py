"""Fixtures of the supervision tests: the digits model served with a reference profile."""

from __future__ import annotations

import pytest


@pytest.fixture
def profiled(model_store, onnx_bytes, digit_rows):
    """``digits`` v1, active, profiled on 400 real digits (its reference profile)."""
    from inference.services import model_version_activate, model_version_register

    version = model_version_register(
        name="digits", data=onnx_bytes, actor="test", reference=digit_rows[:400], reference_source="test rows"
    )
    return model_version_activate(version=version, actor="test")
