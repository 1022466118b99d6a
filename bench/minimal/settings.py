"""Settings of the minimal Django app (B5): no apps, no middleware, no database, one URL."""

import os

SECRET_KEY = "bench-minimal-not-a-secret"  # noqa: S105 - signs nothing: no sessions, no forms
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.minimal.urls"
DATABASES: dict = {}
USE_TZ = True
# The same ONNX file the gateway serves (bench/run.py passes its path) and the same single inference thread.
BENCH_MODEL_PATH = os.environ.get("BENCH_MODEL_PATH", "")
INFERENCE_INTRA_OP_THREADS = int(os.environ.get("INFERENCE_INTRA_OP_THREADS", "1"))
