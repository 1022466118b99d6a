"""OpenTelemetry end to end: a real gunicorn and a real Celery worker export OTLP to a collector we run.

The collector is a local HTTP server that decodes the OTLP/HTTP protobuf
bodies, so the test sees exactly what Jaeger, Tempo or an OpenTelemetry
Collector would receive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.db import connection

from tests.support import celery_worker, gateway_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded, pytest.mark.e2e]


class _Collector:
    """Spans received: (service name, span name, trace id hex, attributes)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str, dict[str, object]]] = []
        self.content_types: set[str] = set()
        self.lock = threading.Lock()

    def receive(self, body: bytes, content_type: str) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            self.content_types.add(content_type)
            for resource_spans in request.resource_spans:
                service = next(
                    (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
                )
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        attributes = {a.key: a.value.string_value or a.value.int_value for a in span.attributes}
                        self.spans.append((service, span.name, span.trace_id.hex(), attributes))

    def wait_for(self, predicate, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for s in self.spans if predicate(s)]
            if found:
                return found
            time.sleep(0.1)
        with self.lock:
            names = sorted({(s[0], s[1]) for s in self.spans})
        raise AssertionError(f"no such span within {timeout}s; received: {names}")


@pytest.fixture
def collector() -> Iterator[tuple[_Collector, str]]:
    received = _Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/v1/traces":
                received.receive(body, self.headers.get("Content-Type", ""))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_requests_pipeline_steps_database_and_jobs_are_traced(collector, env, digits, make_caller, digit_rows):
    received, endpoint = collector
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    caller = make_caller()
    with gateway_server(workers=1, **env, **tracing) as base, celery_worker(**env, **tracing):
        response = requests.post(
            f"{base}/v1/models/digits/predict",
            headers=caller.http_headers,
            json={"instances": digit_rows[:2].tolist(), "purpose": "research"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        request_spans = received.wait_for(lambda s: s[0] == "maas-gateway" and s[1].startswith("POST"))
        trace_id = request_spans[0][2]
        # One request span, with its route: the instrumentation runs inside the lean API stack too.
        assert len(request_spans) == 1 and request_spans[0][3].get("http.route") == "v1/models/<str:name>/predict"
        steps = {"auth", "model", "policy", "quota", "validate", "infer", "audit"}
        step_spans = received.wait_for(lambda s: s[2] == trace_id and s[1].startswith("gateway."))
        assert {s[1] for s in received.spans if s[2] == trace_id and s[1].startswith("gateway.")} == {
            f"gateway.{step}" for step in steps
        }, step_spans
        if connection.vendor == "postgresql":  # psycopg is instrumented; SQLite has no instrumentation here
            received.wait_for(lambda s: s[2] == trace_id and s[3].get("db.system") == "postgresql")

        job = requests.post(
            f"{base}/v1/jobs",
            headers=caller.http_headers,
            json={"model": "digits", "purpose": "research", "instances": digit_rows[:3].tolist()},
            timeout=30,
        )
        assert job.status_code == 202, job.text
        # The worker's run span continues the trace the request started (context travels in the message).
        submit_trace = received.wait_for(
            lambda s: s[0] == "maas-gateway" and s[1].startswith("POST") and s[2] != trace_id
        )[0][2]
        received.wait_for(lambda s: s[0] == "maas-worker" and s[1].startswith("run/") and s[2] == submit_trace)
    assert received.content_types == {"application/x-protobuf"}


def test_without_an_endpoint_nothing_is_exported(collector, env, digits, make_caller, digit_rows):
    received, _ = collector
    caller = make_caller()
    with gateway_server(workers=1, **env) as base:
        response = requests.get(f"{base}/v1/models", headers=caller.http_headers, timeout=30)
        assert response.status_code == 200
    assert received.spans == []
