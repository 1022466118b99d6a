"""OpenTelemetry tracing: off unless an OTLP endpoint is configured, then every layer is traced.

Set ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
and each gateway and Celery process exports spans over OTLP/HTTP (protobuf)
through a batching processor:

* the official instrumentations: Django (one server span per request),
  Celery (publish and run spans, context carried in the message), psycopg
  (one span per PostgreSQL statement) and redis (one per command);
* our own spans for the governed pipeline's steps (``span`` below, used by
  ``gateway.pipeline.GovernedCall``): ``gateway.auth``, ``gateway.model``,
  ``gateway.policy``, ``gateway.quota``, ``gateway.validate``,
  ``gateway.infer``, ``gateway.audit``.

The standard ``OTEL_*`` variables (service name, headers, sampler, batch
delays) apply as documented by OpenTelemetry.  Unset, nothing is imported
beyond this module and ``span`` is a shared ``nullcontext``: the request
path pays one attribute read per step (``make bench`` measures both).

Configuration runs where a process is born: ``gateway.wsgi``/``gateway.asgi``
before Django builds its middleware chain (the Django instrumentation inserts
its own), and Celery's ``worker_process_init`` in each pool process (after
the fork, so the exporter's thread is the child's own).
"""

from __future__ import annotations

import contextlib
import logging
import os
from contextlib import AbstractContextManager
from typing import Any

logger = logging.getLogger("core.tracing")

_NULL = contextlib.nullcontext()
_tracer: Any = None


def tracing_endpoint() -> str:
    """The configured OTLP endpoint ('' when tracing is off)."""
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")


def tracing_enabled() -> bool:
    """True once this process exports spans."""
    return _tracer is not None


def tracing_configure(*, service_name: str, celery: bool = False, span_processor: Any = None) -> bool:
    """Install the tracer provider and the instrumentations once per process; False when tracing is off.

    ``span_processor`` replaces the OTLP batch exporter (tests pass an
    in-memory one); without it and without an endpoint nothing happens.
    """
    global _tracer
    if _tracer is not None:
        return True
    if span_processor is None and not tracing_endpoint():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    if span_processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        span_processor = BatchSpanProcessor(OTLPSpanExporter())
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(span_processor)
    trace.set_tracer_provider(provider)
    _instrument(celery=celery)
    _tracer = trace.get_tracer("maas.gateway")
    logger.info("tracing to %s as %s", tracing_endpoint() or "a local span processor", service_name)
    return True


def _instrument(*, celery: bool) -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    _instrument_django(DjangoInstrumentor())
    for instrumentor in (PsycopgInstrumentor(), RedisInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    if celery:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        if not CeleryInstrumentor().is_instrumented_by_opentelemetry:
            CeleryInstrumentor().instrument()


def _instrument_django(instrumentor: Any) -> None:
    """The Django instrumentation's middleware at the top of each of the two middleware stacks.

    Where ``API_MIDDLEWARE`` exists, ``MIDDLEWARE`` starts with the split that
    hands API routes to it (``gateway.stacks``).  The instrumentation's own
    choice, first in ``MIDDLEWARE``, would wrap both stacks, but its view hook
    -- which gives the request span its ``http.route`` -- would never run for
    an API route, whose view the lean stack resolves and calls.  So it goes
    right after the split and first in ``API_MIDDLEWARE``: one span per
    request, complete, whichever stack serves it.
    """
    from django.conf import settings

    if instrumentor.is_instrumented_by_opentelemetry:
        return
    lean = getattr(settings, "API_MIDDLEWARE", None)
    instrumentor.instrument(middleware_position=0 if lean is None else 1)
    if lean is not None:
        settings.API_MIDDLEWARE = [instrumentor._opentelemetry_middleware, *lean]


def span(name: str) -> AbstractContextManager[Any]:
    """A span named ``name`` around a block when tracing is on; a shared no-op context otherwise."""
    if _tracer is None:
        return _NULL
    return _tracer.start_as_current_span(name)
