"""The gateway's routes with no ``api_urlconf``: every request takes the full middleware stack.

``tests/gateway/test_stacks.py`` answers the same API request through this
URLconf and through ``gateway.urls`` and compares the two answers.
"""

from django.urls import include, path

from gateway.urls import handler400, handler403, handler404, handler500  # noqa: F401

urlpatterns = [path("", include("gateway.urls"))]
