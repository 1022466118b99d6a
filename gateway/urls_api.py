"""The routes that take the lean API middleware stack (``gateway.stacks``); ``gateway.urls`` mounts them too.

Every view here is answered to an API key or to nobody: each is CSRF-exempt
and reads neither the session nor ``request.user``, so sessions, CSRF,
authentication, OTP, messages and django-axes have nothing to do for it
(``tests/gateway/test_stacks.py`` walks this list).  Routes that honour a
staff session -- ``/metrics``, ``/readyz``'s detailed report, the audit
export -- and the human pages (admin, API docs) stay in ``gateway.urls`` only.
"""

from django.conf import settings
from django.urls import path

from audit import urls as audit_urls
from core import health
from gateway.api import urls as api_urls

# One flat list rather than include()s: every route an API request tries is one pattern match, with no
# nested resolver raising and catching a Resolver404 for each app whose routes did not match.
urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    *api_urls.urlpatterns,
    *audit_urls.public_urlpatterns,
]

if settings.BENCH_ENDPOINTS:
    from gateway import bench_views

    urlpatterns += bench_views.urlpatterns
