"""A root URLconf whose lean API routes fail in each way the request context must map (test_stacks.py)."""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from gateway.urls import handler400, handler403, handler404, handler500  # noqa: F401


@csrf_exempt
def boom(request):
    """An unexpected exception in a lean view."""
    raise RuntimeError("secret internal detail")


@csrf_exempt
def missing(request):
    """Django's own 404 from a lean view."""
    raise Http404("nothing here")


@csrf_exempt
def denied(request):
    """Django's own 403 from a lean view."""
    raise PermissionDenied


class LeanRoutes:
    """This URLconf's ``api_urlconf``: the failing views, then the gateway's own API routes."""

    urlpatterns = [
        path("v1/t/boom", boom),
        path("v1/t/missing", missing),
        path("v1/t/denied", denied),
        path("", include("gateway.urls_api")),
    ]


api_urlconf = LeanRoutes
urlpatterns = [*LeanRoutes.urlpatterns, path("", include("gateway.urls"))]
