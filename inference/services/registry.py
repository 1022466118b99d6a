"""Registry writes: register, train, activate, roll back, retire and re-describe model versions.

Every change is one transaction that also bumps the ``models`` generation (so
every gateway process picks up the new active version within about a second)
and writes a ``model.lifecycle`` audit event; if the audit insert fails, the
change is rolled back (EU AI Act Art. 12: substantial modifications must be
recorded).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_change_record
from core.errors import InvalidInput
from core.invalidation import MODELS, generation_bump
from inference.errors import (
    InvalidModelFile,
    InvalidReferenceData,
    ModelCardIncomplete,
    ModelIntegrityFailed,
    ModelLifecycleConflict,
    TrainingFailed,
)
from inference.lifecycle_guards import lifecycle_guards_check
from inference.model_card import STATED_FIELDS, CardError, card_fields_check, card_missing
from inference.models import ModelRollout, ModelVersion, RiskTier, model_name_validator
from inference.profile import ProfileError, features_matrix, reference_profile_build
from inference.runtime import ModelLoadError, read_verified
from inference.selectors import model_spec_from_row
from inference.signature import OutputKind, SignatureError, TensorSpec, labels_check, softmax, tensors_from_signature
from inference.store import (
    META_LABELS,
    META_OUTPUT_KIND,
    META_PLAUSIBLE_MAX,
    META_PLAUSIBLE_MIN,
    META_VALUE_MAX,
    META_VALUE_MIN,
    InvalidOnnxFile,
    onnx_signature,
    place_model_file,
    probe_outputs,
    relative_path,
    sha256_bytes,
    stage_model_file,
)

logger = logging.getLogger("inference.registry")

NO_TRAINING_LINEAGE = "no training lineage"
_REGISTER_ATTEMPTS = 5


def _audit(
    *, actor: str, action: str, version: ModelVersion | None, target: str, before: Any, after: Any, **extra: Any
):
    details: dict[str, Any] = dict(extra)
    if version is not None:
        details.update(model_name=version.name, model_version=version.version, model_sha256=version.sha256)
    audit_change_record(
        actor=actor,
        action=action,
        target=target,
        before=before,
        after=after,
        event_type=AuditEvent.Type.MODEL_LIFECYCLE,
        extra=details,
    )


def governance_fields_check(*, name: str, risk_tier: str, region: str) -> None:
    """Refuse a model name, risk tier or region that the registry cannot record (``InvalidInput``)."""
    try:
        model_name_validator(name)
    except ValidationError as exc:
        raise InvalidInput(f"Invalid model name {name!r}: {exc.messages[0]}") from None
    if risk_tier not in RiskTier.values:
        raise InvalidInput(f"Unknown risk tier {risk_tier!r}; choose one of {', '.join(RiskTier.values)}.")
    if not region or len(region) > 16:
        raise InvalidInput("A deployment region (1 to 16 characters, e.g. 'eu') is required.")


def _metadata_props(data: bytes) -> dict[str, str]:
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception:  # unreadable files are reported by onnx_signature with a precise message
        return {}
    return {entry.key: entry.value for entry in model.metadata_props}


def _default_kind(shape: tuple[int, ...], labels: list[Any] | None, outputs: int) -> str:
    """No kind stated: ``[batch, classes]`` is a classifier, ``[batch]`` or ``[batch, 1]`` a regression."""
    if labels is not None or (outputs == 1 and len(shape) == 2 and shape[1] >= 2):
        return OutputKind.PROBABILITIES
    if outputs > 1:
        return OutputKind.TENSOR
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return OutputKind.REGRESSION
    return OutputKind.TENSOR


def _kind_check(
    *,
    name: str,
    kind: str,
    output: str,
    shape: tuple[int, ...],
    labels: list[Any] | None,
    plausible: tuple[float | None, float | None],
) -> list[Any]:
    """Check the output kind against the primary output and the labels; return the labels to record."""
    if kind not in OutputKind.CHOICES:
        raise InvalidInput(f"Unknown output kind {kind!r}; choose one of {', '.join(OutputKind.CHOICES)}.")
    low, high = plausible
    if kind != OutputKind.REGRESSION and (low is not None or high is not None):
        raise InvalidInput("A plausible range applies to regression models only.")
    if (low is None) != (high is None) or (low is not None and not (math.isfinite(low) and math.isfinite(high))):
        raise InvalidInput("State both ends of the plausible range as finite numbers, or neither.")
    if low is not None and not low < high:
        raise InvalidInput(f"The plausible range [{low:g}, {high:g}] is empty.")
    if kind in OutputKind.CLASSIFIERS:
        if len(shape) != 2 or shape[1] < 2:
            raise InvalidModelFile(
                f"Cannot register this file as {name!r} ({kind}): output {output!r} has shape {list(shape)} "
                "on a batch of 2; a [batch, classes] output with at least 2 classes is needed."
            )
        labels = list(range(shape[1])) if labels is None else list(labels)
        if len(labels) != shape[1]:
            raise InvalidModelFile(f"The file has {shape[1]} output classes but {len(labels)} labels were given.")
        try:
            return labels_check(labels)
        except SignatureError as exc:
            raise InvalidInput(f"Class labels {labels[:5]!r}...: {exc}.") from None
    if labels:
        raise InvalidInput(f"Labels apply to classifiers only; this is a {kind} model.")
    if kind == OutputKind.REGRESSION and len(shape) > 2:
        raise InvalidModelFile(
            f"Cannot register this file as {name!r} (regression): output {output!r} has shape {list(shape)} "
            "on a batch of 2; [batch] or [batch, values] is needed."
        )
    return []


ReferenceData = np.ndarray | Mapping[str, np.ndarray]


def _reference_feeds(reference: ReferenceData, inputs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    """The reference set as one array per input, shaped and typed like the signature; InvalidReferenceData."""
    if isinstance(reference, np.ndarray):
        if len(inputs) != 1:
            raise InvalidReferenceData(
                f"This model takes {len(inputs)} inputs; give the reference set as one array per input name."
            )
        reference = {inputs[0].name: reference}
    missing = [spec.name for spec in inputs if spec.name not in reference]
    if missing:
        raise InvalidReferenceData(f"The reference set lacks input(s) {', '.join(map(repr, missing))}.")
    feeds: dict[str, np.ndarray] = {}
    for spec in inputs:
        array = np.asarray(reference[spec.name])
        if array.dtype.kind not in "biuf" or array.ndim < 1 or array.shape[0] == 0:
            raise InvalidReferenceData(
                f"The reference values of input {spec.name!r} must be a non-empty numeric array."
            )
        shape = tuple(spec.instance_shape)
        if tuple(array.shape[1:]) != shape:
            size = int(np.prod(shape)) if shape else 1
            if int(np.prod(array.shape[1:])) != size:
                raise InvalidReferenceData(
                    f"The reference rows of input {spec.name!r} have shape {list(array.shape[1:])}; "
                    f"expected {list(shape)} ({size} values)."
                )
            array = array.reshape((array.shape[0], *shape))
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidReferenceData(f"The reference values of input {spec.name!r} hold NaN or infinity.")
        feeds[spec.name] = np.ascontiguousarray(array.astype(spec.dtype))
    if len({a.shape[0] for a in feeds.values()}) != 1:
        raise InvalidReferenceData("The reference inputs disagree on the number of instances.")
    return feeds


def _reference_profile(
    *,
    data: bytes,
    signature: dict[str, Any],
    output_name: str,
    kind: str,
    labels: list[Any],
    reference: ReferenceData,
    reference_labels: np.ndarray | None,
    source: str,
) -> dict[str, Any]:
    """Run the file on the reference set and count it into a profile (``inference.profile``)."""
    import onnxruntime as ort

    feeds = _reference_feeds(reference, tensors_from_signature(signature, "inputs"))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    try:
        primary = session.run([output_name], feeds)[0]
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise InvalidReferenceData(f"The model cannot run on the reference set: {str(exc)[:200]}") from None
    probabilities = values = None
    if kind in OutputKind.CLASSIFIERS:
        probabilities = softmax(primary) if kind == OutputKind.LOGITS else primary
    elif kind == OutputKind.REGRESSION:
        values = primary
    try:
        return reference_profile_build(
            features=features_matrix(feeds),
            kind=kind,
            labels=labels,
            probabilities=probabilities,
            values=values,
            true_labels=reference_labels,
            source=source,
        )
    except ProfileError as exc:
        raise InvalidReferenceData(f"No reference profile: {exc}.") from None


def _card_fields(card: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return card_fields_check(card or {})
    except CardError as exc:
        raise InvalidInput(f"Model card: {exc}.") from None


def model_version_register(
    *,
    name: str,
    data: bytes,
    actor: str,
    value_min: float | None = None,
    value_max: float | None = None,
    labels: list[Any] | None = None,
    metrics: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
    risk_tier: str = RiskTier.LIMITED,
    region: str = "eu",
    model_card: str = "",
    action: str = "model.register",
    output_kind: str | None = None,
    plausible_min: float | None = None,
    plausible_max: float | None = None,
    card: Mapping[str, Any] | None = None,
    reference: ReferenceData | None = None,
    reference_labels: np.ndarray | None = None,
    reference_source: str = "",
) -> ModelVersion:
    """Check an ONNX file, store it as the next version of ``name`` (staged) and record it.

    ``card`` holds the structured model card fields (``inference.model_card``);
    ``reference`` (one array, or one per input name) is the held-out or
    reference data whose profile live statistics are compared with: the file
    is run on it once here.  Without it the version has no reference profile.

    The signature is read from the graph; the file must run in ONNX Runtime on
    a batch of two.  Labels and the value range default to the ``maas.*``
    metadata this project's exporter writes; a foreign file must state its
    value range, and its labels default to ``0..classes-1``.  Without
    ``lineage`` the version is marked as having no training lineage.

    ``output_kind`` (else the file's ``maas.output_kind``, else read from the
    primary output's shape) says how predictions are read: ``probabilities``
    or ``logits`` (a ``[batch, classes]`` output; labels all integers or all
    strings), ``regression`` (``[batch]`` or ``[batch, k]`` values; an
    optional plausible range ``plausible_min``/``plausible_max`` outside which
    a value needs human review) or ``tensor`` (every output returned raw).
    """
    governance_fields_check(name=name, risk_tier=risk_tier, region=region)
    try:
        sig = onnx_signature(data)
        shapes = probe_outputs(data, sig)
    except InvalidOnnxFile as exc:
        raise InvalidModelFile(f"Cannot register this file as {name!r}: {exc}.") from None
    props = _metadata_props(data)
    if labels is None and META_LABELS in props:
        labels = json.loads(props[META_LABELS])
    if value_min is None and META_VALUE_MIN in props:
        value_min = float(props[META_VALUE_MIN])
    if value_max is None and META_VALUE_MAX in props:
        value_max = float(props[META_VALUE_MAX])
    if value_min is None:
        value_min = 0.0
    if value_max is None:
        raise InvalidInput(
            "State the model's input value range (value_max, e.g. 16 for 8x8 digits or 255 for MNIST): "
            "this file does not record it."
        )
    if not value_min < value_max:
        raise InvalidInput(f"The value range [{value_min:g}, {value_max:g}] is empty.")
    default_kind = _default_kind(shapes[sig.output_name], labels, len(shapes))
    output_kind = output_kind or props.get(META_OUTPUT_KIND) or default_kind
    if plausible_min is None and META_PLAUSIBLE_MIN in props:
        plausible_min = float(props[META_PLAUSIBLE_MIN])
    if plausible_max is None and META_PLAUSIBLE_MAX in props:
        plausible_max = float(props[META_PLAUSIBLE_MAX])
    labels = _kind_check(
        name=name,
        kind=output_kind,
        output=sig.output_name,
        shape=shapes[sig.output_name],
        labels=labels,
        plausible=(plausible_min, plausible_max),
    )
    card_fields = _card_fields(card)
    profile = None
    if reference is not None:
        profile = _reference_profile(
            data=data,
            signature=sig.signature,
            output_name=sig.output_name,
            kind=output_kind,
            labels=labels,
            reference=reference,
            reference_labels=reference_labels,
            source=reference_source or "reference data supplied at registration",
        )
    sha256 = sha256_bytes(data)
    lineage = lineage or {"training": NO_TRAINING_LINEAGE, "source": "registered ONNX file"}
    store_dir = settings.MODEL_STORE_DIR
    staged = stage_model_file(store_dir=store_dir, name=name, data=data)
    try:
        for attempt in range(_REGISTER_ATTEMPTS):
            try:
                with transaction.atomic():
                    latest = ModelVersion.objects.filter(name=name).aggregate(top=Max("version"))["top"] or 0
                    version = ModelVersion.objects.create(
                        name=name,
                        version=latest + 1,
                        file_path=relative_path(name, latest + 1),
                        sha256=sha256,
                        file_size=len(data),
                        signature=sig.signature,
                        input_width=sig.input_width,
                        value_min=float(value_min),
                        value_max=float(value_max),
                        labels=labels,
                        output_kind=output_kind,
                        plausible_min=plausible_min,
                        plausible_max=plausible_max,
                        metrics=metrics or {},
                        lineage=lineage,
                        risk_tier=risk_tier,
                        region=region,
                        model_card=model_card,
                        card=card_fields,
                        reference_profile=profile,
                        created_by=actor,
                    )
                    _audit(
                        actor=actor,
                        action=action,
                        version=version,
                        target=version.ref,
                        before=None,
                        after={"status": version.status, "sha256": sha256, "accuracy": version.accuracy},
                        risk_tier=risk_tier,
                        region=region,
                        reference_profile=profile["digest"] if profile else None,
                    )
                    # Last step inside the transaction: the row already owns this
                    # version number, so no other registration can write this path.
                    place_model_file(staged=staged, store_dir=store_dir, name=name, version=version.version)
                return version
            except IntegrityError:
                # Another registration took this version number between our read and insert.
                if attempt == _REGISTER_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")
    finally:
        staged.unlink(missing_ok=True)


def model_version_train(
    *,
    actor: str,
    name: str = "digits",
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    data_path: str | None = None,
    risk_tier: str = RiskTier.LIMITED,
    region: str = "eu",
    activate: bool = False,
    progress: Callable[[Any], None] | None = None,
    risk_rationale: str = "",
) -> ModelVersion:
    """Train with TensorFlow, export to ONNX through the parity gate, register, optionally activate.

    A refused export (parity gate, bad data) is audited and raised as
    :class:`TrainingFailed`; nothing is registered then.
    """
    governance_fields_check(name=name, risk_tier=risk_tier, region=region)
    from inference import training

    defaults = training.TrainingConfig()
    config = training.TrainingConfig(
        epochs=defaults.epochs if epochs is None else epochs,
        batch_size=defaults.batch_size if batch_size is None else batch_size,
        seed=defaults.seed if seed is None else seed,
        data_path=data_path,
    )
    try:
        result = training.train_model(config, progress=progress)
    except training.TrainingError as exc:
        figures = getattr(exc, "figures", None)
        _audit(
            actor=actor,
            action="model.train_refused",
            version=None,
            target=name,
            before=None,
            after=None,
            error=str(exc),
            figures=figures,
            model_name=name,
        )
        raise TrainingFailed(str(exc), **({"figures": figures} if figures else {})) from exc
    version = model_version_register(
        name=name,
        data=result.onnx_bytes,
        actor=actor,
        value_min=result.value_min,
        value_max=result.value_max,
        labels=result.labels,
        metrics=result.metrics,
        lineage=result.lineage,
        risk_tier=risk_tier,
        region=region,
        model_card=training.model_card_text(name=name, result=result, risk_tier=risk_tier, region=region),
        card=training.model_card_fields(result=result) | ({"risk_rationale": risk_rationale} if risk_rationale else {}),
        reference=result.dataset.x_test,
        reference_labels=result.dataset.y_test,
        reference_source=f"held-out set: {result.lineage['split']}",
        action="model.train",
    )
    if activate:
        version = model_version_activate(version=version, actor=actor)
    return version


def model_file_verify(*, version: ModelVersion) -> None:
    """Read the version's file and check size and SHA-256; :class:`ModelIntegrityFailed` names the version."""
    try:
        read_verified(model_spec_from_row(version))
    except ModelLoadError as exc:
        raise ModelIntegrityFailed(f"Model {version.ref} failed verification: {exc.reason}.") from None


def _activate(*, version: ModelVersion, actor: str, action: str, reason: str = "") -> ModelVersion:
    model_file_verify(version=version)
    try:
        with transaction.atomic():
            # Lock every version of the name: concurrent activations queue here
            # and each one sees the other's result instead of colliding.
            rows = {
                row.pk: row for row in ModelVersion.objects.select_for_update().filter(name=version.name).order_by("pk")
            }
            target = rows.get(version.pk)
            if target is None:
                raise ModelLifecycleConflict(f"Model {version.ref} no longer exists.")
            if target.status == ModelVersion.Status.RETIRED:
                raise ModelLifecycleConflict(
                    f"Model {target.ref} is retired and cannot be activated; register the file again as a new version."
                )
            if target.status == ModelVersion.Status.ACTIVE:
                return target
            # Inside the lock on every version of the name: an incident opened
            # concurrently (it takes the same lock) is seen here.
            lifecycle_guards_check(version=target, operation="rollback" if action == "model.rollback" else "activate")
            _card_complete_check(target)
            previous = next((row for row in rows.values() if row.status == ModelVersion.Status.ACTIVE), None)
            if previous is not None:
                previous.status = ModelVersion.Status.STAGED
                previous.save(update_fields=["status"])
            target.status = ModelVersion.Status.ACTIVE
            target.activated_at = timezone.now()
            target.save(update_fields=["status", "activated_at"])
            generation_bump(kind=MODELS)
            _audit(
                actor=actor,
                action=action,
                version=target,
                target=target.name,
                before={"active": previous.ref if previous else None},
                after={"active": target.ref},
                **_reason(reason),
            )
    except IntegrityError as exc:
        raise ModelLifecycleConflict(
            f"Another version of {version.name!r} was activated at the same time; check list_models and retry."
        ) from exc
    logger.info("model activated", extra={"model": target.ref, "actor": actor, "action": action})
    return target


def _card_complete_check(version: ModelVersion) -> None:
    """A high-risk version serves only with a complete model card (EU AI Act Art. 13, Annex IV)."""
    missing = card_missing(version)
    if missing:
        raise ModelCardIncomplete(
            f"Model {version.ref} is at risk tier 'high' and its model card lacks "
            f"{', '.join(STATED_FIELDS[key].lower() for key in missing)}; complete it before activation.",
            missing_fields=missing,
        )


def _reason(reason: str) -> dict[str, str]:
    """The audit detail member for a stated reason (none when empty)."""
    reason = (reason or "").strip()
    return {"reason": reason[:500]} if reason else {}


def model_version_activate(*, version: ModelVersion, actor: str, reason: str = "") -> ModelVersion:
    """Make ``version`` the one active version of its name (the previous one becomes staged).

    The file is verified first, so a broken file is refused here rather than
    in every gateway process.  Activating the active version is a no-op.
    ``reason``, when given, is kept in the audit record.
    """
    return _activate(version=version, actor=actor, action="model.activate", reason=reason)


def model_version_rollback(*, name: str, actor: str, reason: str = "") -> ModelVersion:
    """Re-activate the version of ``name`` that was active before the current one (``reason`` audited)."""
    candidates = ModelVersion.objects.filter(name=name, activated_at__isnull=False).exclude(
        status__in=[ModelVersion.Status.ACTIVE, ModelVersion.Status.RETIRED]
    )
    previous = candidates.order_by("-activated_at", "-version").first()
    if previous is None:
        raise ModelLifecycleConflict(f"Model {name!r} has no earlier active version to roll back to.")
    return _activate(version=previous, actor=actor, action="model.rollback", reason=reason)


def model_version_retire(*, version: ModelVersion, actor: str, reason: str = "") -> ModelVersion:
    """Withdraw a version for good; the active version must be replaced (or rolled back) first.

    ``reason``, when given, is kept in the audit record.
    """
    with transaction.atomic():
        target = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if target.status == ModelVersion.Status.RETIRED:
            return target
        if target.status == ModelVersion.Status.ACTIVE:
            raise ModelLifecycleConflict(
                f"Model {target.ref} is active; activate another version or roll back before retiring it."
            )
        lifecycle_guards_check(version=target, operation="retire")
        rollout = ModelRollout.objects.filter(name=target.name, state=ModelRollout.State.ACTIVE).first()
        if rollout is not None and target.version in rollout.versions:
            # A retired canary would silently send its share back to stable; make the operator say so.
            raise ModelLifecycleConflict(
                f"Model {target.ref} takes part in rollout #{rollout.pk}; promote or roll it back before retiring it."
            )
        before = target.status
        target.status = ModelVersion.Status.RETIRED
        target.retired_at = timezone.now()
        target.save(update_fields=["status", "retired_at"])
        generation_bump(kind=MODELS)
        _audit(
            actor=actor,
            action="model.retire",
            version=target,
            target=target.ref,
            before={"status": before},
            after={"status": target.status},
            **_reason(reason),
        )
    return target


def model_version_update(
    *,
    version: ModelVersion,
    actor: str,
    risk_tier: str | None = None,
    region: str | None = None,
    model_card: str | None = None,
    plausible_range: tuple[float, float] | None = None,
    card: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Change a version's governance facts (risk tier, region, model card, plausible range), audited.

    ``card`` sets structured model card fields (merged into the stated ones;
    an empty text clears a field).  An active version may not end up at risk
    tier ``high`` with an incomplete card (``ModelCardIncomplete``).

    Risk tier and region feed policy decisions, and a regression model's
    plausible range decides which values need human review, so a change bumps
    the ``models`` generation: every process re-reads them within about a second.
    """
    with transaction.atomic():
        target = ModelVersion.objects.select_for_update().get(pk=version.pk)
        governance_fields_check(
            name=target.name,
            risk_tier=target.risk_tier if risk_tier is None else risk_tier,
            region=target.region if region is None else region,
        )
        updates: list[tuple[str, Any]] = [("risk_tier", risk_tier), ("region", region), ("model_card", model_card)]
        if card is not None:
            merged = {**(target.card or {}), **_card_fields(card)}
            updates.append(("card", {key: value for key, value in merged.items() if value not in ("", {})}))
        if plausible_range is not None:
            low, high = (float(v) for v in plausible_range)
            _kind_check(
                name=target.name,
                kind=target.output_kind,
                output="",
                shape=(2, 1),
                labels=None,
                plausible=(low, high),
            )
            updates += [("plausible_min", low), ("plausible_max", high)]
        changes = {field: value for field, value in updates if value is not None and getattr(target, field) != value}
        if not changes:
            return target
        before = {field: getattr(target, field) for field in changes}
        for field, value in changes.items():
            setattr(target, field, value)
        if target.status == ModelVersion.Status.ACTIVE:
            _card_complete_check(target)
        target.save(update_fields=list(changes))
        generation_bump(kind=MODELS)
        _audit(
            actor=actor,
            action="model.update",
            version=target,
            target=target.ref,
            # Model cards can be long: record that it changed, with the new text's size.
            before={k: (v if k != "model_card" else f"{len(v)} characters") for k, v in before.items()},
            after={k: (v if k != "model_card" else f"{len(v)} characters") for k, v in changes.items()},
        )
    return target


def model_version_reference_set(
    *,
    version: ModelVersion,
    actor: str,
    reference: ReferenceData,
    reference_labels: np.ndarray | None = None,
    source: str = "",
) -> ModelVersion:
    """Give a version (for example one registered without data) a reference profile computed from ``reference``.

    The verified file is run on the reference set; the profile replaces any
    earlier one, audited, and every process picks up the new bins within
    about a second (``models`` generation).
    """
    try:
        data = read_verified(model_spec_from_row(version))
    except ModelLoadError as exc:
        raise ModelIntegrityFailed(f"Model {version.ref} failed verification: {exc.reason}.") from None
    profile = _reference_profile(
        data=data,
        signature=version.signature,
        output_name=model_spec_from_row(version).output_name,
        kind=version.output_kind,
        labels=list(version.labels),
        reference=reference,
        reference_labels=reference_labels,
        source=source or "reference data supplied after registration",
    )
    with transaction.atomic():
        target = ModelVersion.objects.select_for_update().get(pk=version.pk)
        before = (target.reference_profile or {}).get("digest")
        target.reference_profile = profile
        target.save(update_fields=["reference_profile"])
        generation_bump(kind=MODELS)
        _audit(
            actor=actor,
            action="model.reference_profile",
            version=target,
            target=target.ref,
            before={"reference_profile": before},
            after={"reference_profile": profile["digest"], "instances": profile["instances"]},
        )
    return target
