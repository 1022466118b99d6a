"""A test-only URLconf with views that fail in each way the error format must cover."""

from django.urls import include, path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway.urls import handler400, handler403, handler404, handler500  # noqa: F401
from tenants.errors import QuotaExceeded


class _Input(serializers.Serializer):
    count = serializers.IntegerField(min_value=1)


class EchoApi(APIView):
    """Validates a body; only POST is allowed."""

    def post(self, request):
        data = _Input(data=request.data)
        data.is_valid(raise_exception=True)
        return Response({"count": data.validated_data["count"]})


class BoomApi(APIView):
    """Raises an unexpected exception."""

    def get(self, request):
        raise RuntimeError("secret internal detail")


class QuotaApi(APIView):
    """Raises a domain error with a protocol header."""

    def get(self, request):
        raise QuotaExceeded("daily quota of 5 instances used", headers={"Retry-After": "60"}, limit="daily")


def plain_boom(request):
    """A plain Django view that raises."""
    raise ValueError("plain view failure")


urlpatterns = [
    path("t/echo", EchoApi.as_view()),
    path("t/boom", BoomApi.as_view()),
    path("t/quota", QuotaApi.as_view()),
    path("t/plain-boom", plain_boom),
    path("", include("gateway.urls")),
]
