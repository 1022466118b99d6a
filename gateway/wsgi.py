"""WSGI entry point used by gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

from core.tracing import tracing_configure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
# Before Django builds its middleware chain: the Django instrumentation adds its own (no-op unless
# OTEL_EXPORTER_OTLP_ENDPOINT is set; Celery is instrumented here too, for the publish side of jobs).
tracing_configure(service_name="maas-gateway", celery=True)
application = get_wsgi_application()
