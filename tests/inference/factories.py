"""factory_boy factories of the inference app."""

from __future__ import annotations

import factory

from inference.models import TrainingRun


class TrainingRunFactory(factory.django.DjangoModelFactory):
    """A queued training run of the default model, as the admin would record it."""

    class Meta:
        model = TrainingRun

    model_name = "digits"
    epochs = 2
    requested_by = factory.Sequence(lambda n: f"staff:user{n}")
