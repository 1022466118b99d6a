"""ASGI entry point (uvicorn or any ASGI server)."""

import os

from django.core.asgi import get_asgi_application

from core.tracing import tracing_configure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
tracing_configure(service_name="maas-gateway", celery=True)  # see gateway.wsgi
application = get_asgi_application()
