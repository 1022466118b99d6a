"""Errors of the model registry and serving core, on top of :mod:`core.errors`.

Services raise these; the gateway's one exception handler renders them as
problem documents like every other :class:`core.errors.DomainError`.
"""

from __future__ import annotations

from core.errors import BackendUnavailable, Conflict, InvalidInput, NotFound


class BatchTooLarge(InvalidInput):
    """More instances in one request than the caller's plan allows (still a 400: the request is wrong)."""

    code, title = "batch_too_large", "Batch too large"


class ModelIntegrityFailed(Conflict):
    """A model file is missing or does not match the checksum recorded when it was registered."""

    code, title = "model_integrity_failed", "Model file failed verification"


class ModelLifecycleConflict(Conflict):
    """A registry transition that the version's current state does not allow."""

    code, title = "model_lifecycle_conflict", "Model lifecycle conflict"


class InvalidModelFile(InvalidInput):
    """An ONNX file that cannot be registered (unreadable, or not a classifier over one 2-D input)."""

    code, title = "invalid_model_file", "Invalid model file"


class TrainingFailed(Conflict):
    """Training finished without a version that may be registered (e.g. the parity gate refused the export)."""

    code, title = "training_failed", "Training failed"


class ModelNotFound(NotFound):
    code, title = "model_not_found", "Model not found"


class ModelVersionNotFound(NotFound):
    code, title = "model_version_not_found", "Model version not found"


class ModelUnavailable(BackendUnavailable):
    code, title = "model_unavailable", "Model unavailable"


class InvalidRollout(InvalidInput):
    """A rollout request that cannot be carried out as given (bad percentage, no mode, no reason)."""

    code, title = "invalid_rollout", "Invalid rollout"


class RolloutConflict(Conflict):
    """A rollout change that contradicts the registry or the rollout in progress."""

    code, title = "rollout_conflict", "Rollout conflict"


class RolloutNotFound(NotFound):
    """The model has no active rollout."""

    code, title = "rollout_not_found", "Rollout not found"


class ModelCardIncomplete(Conflict):
    """A high-risk version whose model card lacks a required field (EU AI Act Art. 13, Annex IV)."""

    code, title = "model_card_incomplete", "Model card incomplete"


class InvalidReferenceData(InvalidInput):
    """A reference data set that cannot give a reference profile (shape, values, size)."""

    code, title = "invalid_reference_data", "Invalid reference data"
