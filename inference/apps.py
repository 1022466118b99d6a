"""App config for the model registry and the ONNX Runtime serving core."""

from django.apps import AppConfig


class InferenceConfig(AppConfig):
    """Model registry, training pipeline and ONNX Runtime serving."""

    name = "inference"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the ``model`` readiness check (the default model loads, with its provider)."""
        from core.health import register_readiness_check
        from inference.selectors import model_readiness

        register_readiness_check("model", model_readiness)
