"""Fixtures for the adversarial tests: the protocol surfaces' served model and tenants with keys."""

from __future__ import annotations

from tests.gateway.conftest import digit_rows, digits, make_caller

__all__ = ["digit_rows", "digits", "make_caller"]
