"""The step ``ensure_default_model`` and ``ensure_bundled_models`` share: is a good version already active?"""

from __future__ import annotations

from typing import Any

from inference.errors import ModelIntegrityFailed
from inference.management.commands.train_model import describe_version
from inference.models import ModelVersion
from inference.services import model_file_verify


def active_version_reusable(*, name: str, stdout: Any, stderr: Any, label: str = "") -> bool:
    """True (and say so) when ``name`` has an active version whose file verifies; False when one must be trained.

    An active version whose file fails its checksum is reported on ``stderr``
    and is not reused: the caller trains a replacement.  ``label`` names the
    model in the message (default: its name).
    """
    active = ModelVersion.objects.filter(name=name, status=ModelVersion.Status.ACTIVE).first()
    if active is None:
        return False
    try:
        model_file_verify(version=active)
    except ModelIntegrityFailed as exc:
        stderr.write(f"{exc.detail} Training a replacement.")
        return False
    stdout.write(f"{label or name} is active: {describe_version(active)}")
    return True
