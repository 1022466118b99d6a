"""Errors of the training pipeline; messages are meant for the operator who started the run."""

from __future__ import annotations

from typing import Any


class TrainingError(Exception):
    """Training cannot produce a version; the message is meant for the operator."""


class DatasetError(TrainingError):
    """The training data is missing or not in the expected format."""


class ParityError(TrainingError):
    """ONNX Runtime does not reproduce TensorFlow's outputs closely enough: the export is refused."""

    def __init__(self, message: str, *, figures: dict[str, Any]):
        self.figures = figures
        super().__init__(message)
