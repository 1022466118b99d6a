"""The Django project of the MaaS gateway; importing it loads the Celery app."""

from gateway.celery import app as celery_app

__all__ = ["celery_app"]
