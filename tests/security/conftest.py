"""Fixtures of the security regression tests: the gateway's callers, model and inputs."""

from tests.gateway.conftest import digit_rows, digits, make_caller  # noqa: F401  (re-exported fixtures)
