"""A test-only endpoint over the runtime API, to see its errors as problem documents over HTTP."""

from __future__ import annotations

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.services import instances_predict


class PredictTestApi(APIView):
    """``POST /t/predict/<name>`` with ``{"instances": [...]}``: the runtime API with no governance."""

    def post(self, request: Request, name: str) -> Response:
        prediction = instances_predict(name=name, instances=request.data.get("instances"), max_batch=8)
        return Response({"labels": prediction.labels, "top_probabilities": prediction.top_probabilities})


urlpatterns = [path("t/predict/<str:name>", PredictTestApi.as_view())]
