"""Writes and the runtime API of the inference app, re-exported from one place.

* :mod:`~inference.services.registry`: register, train, activate, roll back, retire.
* :mod:`~inference.services.serving`: validate instances and predict (the hot path).
* :mod:`~inference.services.training_runs`: admin-started training on a Celery worker.
"""

from inference.services.registry import (
    NO_TRAINING_LINEAGE,
    governance_fields_check,
    model_file_verify,
    model_version_activate,
    model_version_reference_set,
    model_version_register,
    model_version_retire,
    model_version_rollback,
    model_version_train,
    model_version_update,
)
from inference.services.serving import (
    Prediction,
    inputs_validate,
    instances_predict,
    instances_validate,
    model_predict,
)
from inference.services.training_runs import training_run_create, training_run_execute

__all__ = [
    "NO_TRAINING_LINEAGE",
    "Prediction",
    "governance_fields_check",
    "inputs_validate",
    "instances_predict",
    "instances_validate",
    "model_file_verify",
    "model_predict",
    "model_version_activate",
    "model_version_reference_set",
    "model_version_register",
    "model_version_retire",
    "model_version_rollback",
    "model_version_train",
    "model_version_update",
    "training_run_create",
    "training_run_execute",
]
