"""App config for the model registry and the ONNX Runtime serving core."""

from django.apps import AppConfig


class InferenceConfig(AppConfig):
    """Model registry, training pipeline and ONNX Runtime serving."""

    name = "inference"
    default_auto_field = "django.db.models.BigAutoField"
