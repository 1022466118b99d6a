"""``core.tracing`` off by default: no provider, no instrumentation, a shared no-op span."""

from __future__ import annotations

import contextlib

from core import tracing


def test_without_an_endpoint_tracing_stays_off(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.tracing_endpoint() == ""
    assert tracing.tracing_configure(service_name="test") is False
    assert not tracing.tracing_enabled()
    assert isinstance(tracing.span("gateway.auth"), contextlib.nullcontext)


def test_the_traces_endpoint_wins_over_the_general_one(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/v1/traces")
    assert tracing.tracing_endpoint() == "http://traces:4318/v1/traces"
