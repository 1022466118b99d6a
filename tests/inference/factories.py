"""factory_boy factories of the inference app."""

from __future__ import annotations

import factory

from inference.models import ModelVersion, TrainingRun


class TrainingRunFactory(factory.django.DjangoModelFactory):
    """A queued training run of the default model, as the admin would record it."""

    class Meta:
        model = TrainingRun

    model_name = "digits"
    epochs = 2
    requested_by = factory.Sequence(lambda n: f"staff:user{n}")


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A registry row without a file: enough for admin pages and forms that only read the registry."""

    class Meta:
        model = ModelVersion

    name = "digits"
    version = factory.Sequence(lambda n: n + 1)
    file_path = factory.LazyAttribute(lambda o: f"{o.name}/{o.version}/model.onnx")
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    file_size = 1024
    input_width = 64
    value_min = 0.0
    value_max = 16.0
    labels = factory.LazyFunction(lambda: list(range(10)))
    created_by = "test"


#: Every stated model card field: a version may then serve at risk tier "high".
COMPLETE_CARD = {
    "intended_purpose": "Classify 8x8 handwritten digits for research.",
    "out_of_scope_uses": "Decisions about people.",
    "training_data": "scikit-learn digits, stratified split.",
    "metrics_per_class": {"0": {"recall": 0.99}, "1": {"recall": 0.97}},
    "limitations": "Clean, centred digits only.",
    "risk_rationale": "Stated high for the test: the deployer uses it in a regulated workflow.",
}
