"""WSGI entry point of the minimal app (B5), served by the same gunicorn command and config as the gateway."""

import os

from django.core.wsgi import get_wsgi_application

# Not setdefault: the gunicorn configuration imports the gateway package, which names its own settings.
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.minimal.settings"
application = get_wsgi_application()
