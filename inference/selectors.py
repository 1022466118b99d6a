"""Registry reads and the served-model lookup on every request's hot path.

``model_serving_get`` costs two dictionary lookups on a warm process: the
name-to-active-version map lives in a :class:`core.invalidation.LocalCache`
of kind ``models`` (dropped within about a second of any activation, in every
process, with no restart), and sessions live in :data:`inference.runtime.sessions`
for the life of the process.  A newly activated version is loaded by the first
request that needs it; sessions already handed out keep working, so
in-flight requests never fail during an activation.

If the active version's file fails verification, the process keeps serving
the version it last served for that name and logs an error; only a process
that never loaded a good version answers 503.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from core.invalidation import MODELS, LocalCache
from inference.errors import ModelNotFound, ModelUnavailable, ModelVersionNotFound
from inference.model_card import card_build
from inference.models import ModelRollout, ModelVersion
from inference.runtime import ModelLoadError, ModelSpec, ServedModel, select_providers, sessions
from inference.signature import tensors_from_signature
from policy.evaluator import ModelFacts

logger = logging.getLogger("inference.serving")


@dataclass(frozen=True)
class _Missing:
    """A cached negative answer (unknown name, no active version, unservable version)."""

    error: type[ModelNotFound] | type[ModelVersionNotFound]
    detail: str


@dataclass(frozen=True)
class ModelInfo:
    """Catalog metadata of a model's active version; building it never loads a session."""

    name: str
    active_version: int
    versions: list[int]
    signature: dict[str, Any]
    labels: list[Any]
    risk_tier: str
    region: str
    provider: str
    model_card: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    sha256: str
    input_width: int
    value_min: float
    value_max: float
    created_at: str
    activated_at: str | None
    output_kind: str = "probabilities"
    plausible_range: tuple[float, float] | None = None
    #: The structured model card of every version clients may pin, oldest first (``inference.model_card``).
    version_cards: tuple[dict[str, Any], ...] = ()

    def facts(self) -> ModelFacts:
        """What policy needs to know about the active version."""
        return ModelFacts(name=self.name, version=self.active_version, risk_tier=self.risk_tier, region=self.region)


_specs: LocalCache[Any] = LocalCache(MODELS)
# name -> the last active version this process served successfully (the fallback).
_last_good: dict[str, ServedModel] = {}


def model_spec_from_row(row: ModelVersion) -> ModelSpec:
    """What the runtime needs to load ``row`` (paths resolved against this deployment's store)."""
    outputs = row.signature.get("outputs") or [{"name": "probabilities"}]
    output_name = next((o["name"] for o in outputs if o["name"] == "probabilities"), outputs[0]["name"])
    inputs = row.signature.get("inputs") or [{"name": "pixels"}]
    return ModelSpec(
        name=row.name,
        version=row.version,
        path=str(row.absolute_path()),
        sha256=row.sha256,
        file_size=row.file_size,
        input_name=inputs[0]["name"],
        output_name=output_name,
        input_width=row.input_width,
        value_min=row.value_min,
        value_max=row.value_max,
        labels=tuple(row.labels),
        risk_tier=row.risk_tier,
        region=row.region,
        inputs=tensors_from_signature(row.signature, "inputs"),
        outputs=tensors_from_signature(row.signature, "outputs"),
        output_kind=row.output_kind,
        plausible_min=row.plausible_min,
        plausible_max=row.plausible_max,
    )


def _load_active_spec(name: str) -> ModelSpec | _Missing:
    row = ModelVersion.objects.filter(name=name, status=ModelVersion.Status.ACTIVE).first()
    if row is not None:
        return model_spec_from_row(row)
    if ModelVersion.objects.filter(name=name).exists():
        return _Missing(ModelNotFound, f"Model {name!r} has no active version.")
    return _Missing(ModelNotFound, f"No model named {name!r}.")


def _load_version_spec(name: str, version: int, *, staged_ok: bool = False) -> ModelSpec | _Missing:
    row = ModelVersion.objects.filter(name=name, version=version).first()
    if row is None:
        if ModelVersion.objects.filter(name=name).exists():
            return _Missing(ModelVersionNotFound, f"Model {name!r} has no version {version}.")
        return _Missing(ModelNotFound, f"No model named {name!r}.")
    if row.status == ModelVersion.Status.RETIRED:
        sessions.evict(row.name, row.version)
        return _Missing(ModelVersionNotFound, f"Version {version} of model {name!r} is retired.")
    # The canary of an active rollout may be pinned before it was ever activated (the
    # pipeline still checks that the caller may be served a canary); a batch job keeps
    # the version it was accepted with even after its rollout ended (``staged_ok``).
    if not row.servable and not staged_ok and not _is_canary(name, version):
        return _Missing(ModelVersionNotFound, f"Version {version} of model {name!r} has never been activated.")
    return model_spec_from_row(row)


def _is_canary(name: str, version: int) -> bool:
    return ModelRollout.objects.filter(name=name, state=ModelRollout.State.ACTIVE, canary_version=version).exists()


# (INFERENCE_PROVIDERS, INFERENCE_INTRA_OP_THREADS) -> session options.  Keyed by the
# settings values rather than computed once so that a settings override (tests, shell)
# takes effect; memoised because select_providers asks onnxruntime and logs a warning
# for every unavailable provider, which must not happen on every request.
_options: dict[tuple[tuple[str, ...], int], dict[str, Any]] = {}


def _runtime_options() -> dict[str, Any]:
    preferred = tuple(settings.INFERENCE_PROVIDERS or ())
    threads = settings.INFERENCE_INTRA_OP_THREADS
    key = (preferred, threads)
    options = _options.get(key)
    if options is None:
        options = {"providers": select_providers(preferred=list(preferred) or None), "intra_op_threads": threads}
        _options[key] = options
    return options


def _resolve(name: str, version: int | None, *, staged_ok: bool = False) -> ModelSpec:
    if version is None:
        spec = _specs.get_or_load(("active", name), lambda: _load_active_spec(name))
    else:
        spec = _specs.get_or_load(
            ("version", name, version, staged_ok), lambda: _load_version_spec(name, version, staged_ok=staged_ok)
        )
    if isinstance(spec, _Missing):
        raise spec.error(spec.detail)
    return spec


def _still_servable(model: ServedModel) -> bool:
    # A version retired since it was loaded must not come back as a fallback.
    try:
        _resolve(model.name, model.version)
    except (ModelNotFound, ModelVersionNotFound):
        return False
    return True


def model_serving_get(*, name: str, version: int | None = None, staged_ok: bool = False) -> ServedModel:
    """The loaded, verified session for ``name``'s active version (or a pinned, servable ``version``).

    ``staged_ok`` also serves a pinned version that was never activated (not a
    retired one): a batch job accepted on a rollout's canary runs on it even
    if the rollout has ended since.

    Raises ``ModelNotFound`` (unknown name, no active version),
    ``ModelVersionNotFound`` (unknown, retired or never-activated version) or
    ``ModelUnavailable`` (the file fails verification and nothing good was
    loaded before).
    """
    spec = _resolve(name, version, staged_ok=staged_ok)
    # The warm path: the session for exactly this spec is loaded, so no runtime options are needed.
    model = sessions.cached(spec)
    if model is not None:
        if version is None:
            _last_good[name] = model
        return model
    try:
        model = sessions.get(spec, **_runtime_options())
    except ModelLoadError as exc:
        fallback = _last_good.get(name) if version is None else None
        if fallback is not None and not _still_servable(fallback):
            fallback = None
        if fallback is not None:
            if exc.fresh:
                logger.error(
                    "active model refused; serving the previously loaded version",
                    extra={"model": exc.ref, "reason": exc.reason, "serving": fallback.ref},
                )
            return fallback
        raise ModelUnavailable(
            f"Model {exc.ref} is unavailable: {exc.public_reason}, and no earlier version of it is loaded.",
            model=name,
            version=spec.version,
        ) from exc
    if version is None:
        _last_good[name] = model
    return model


def _provider_for(name: str, version: int) -> str:
    loaded = sessions.peek(name, version)
    if loaded is not None:
        return loaded.provider
    return _runtime_options()["providers"][0]


def _info_from_row(row: ModelVersion, versions: list[int], cards: tuple[dict[str, Any], ...] = ()) -> ModelInfo:
    return ModelInfo(
        name=row.name,
        active_version=row.version,
        versions=versions,
        signature=row.signature,
        labels=list(row.labels),
        risk_tier=row.risk_tier,
        region=row.region,
        provider="",
        model_card=row.model_card,
        metrics=row.metrics,
        lineage=row.lineage,
        sha256=row.sha256,
        input_width=row.input_width,
        value_min=row.value_min,
        value_max=row.value_max,
        created_at=row.created_at.isoformat(),
        activated_at=row.activated_at.isoformat() if row.activated_at else None,
        output_kind=row.output_kind,
        plausible_range=(row.plausible_min, row.plausible_max) if row.plausible_min is not None else None,
        version_cards=cards or (card_build(row),),
    )


def _load_catalog() -> dict[str, ModelInfo]:
    servable: dict[str, list[int]] = {}
    cards: dict[str, list[dict[str, Any]]] = {}
    for row in (
        ModelVersion.objects.filter(activated_at__isnull=False)
        .exclude(status=ModelVersion.Status.RETIRED)
        .order_by("name", "version")
    ):
        servable.setdefault(row.name, []).append(row.version)
        cards.setdefault(row.name, []).append(card_build(row))
    return {
        row.name: _info_from_row(row, servable.get(row.name, [row.version]), tuple(cards.get(row.name, ())))
        for row in ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).order_by("name")
    }


def _with_provider(info: ModelInfo) -> ModelInfo:
    return dataclasses.replace(info, provider=_provider_for(info.name, info.active_version))


def model_catalog_list() -> list[ModelInfo]:
    """Every model with an active version, by name; cached per process like the serving map.

    ``provider`` is the provider of the session this process has loaded, or
    the one a load would pick.  ``versions`` lists the versions clients may
    pin (activated at some point and not retired).
    """
    catalog = _specs.get_or_load(("catalog",), _load_catalog)
    return [_with_provider(info) for info in catalog.values()]


def model_detail_get(*, name: str) -> ModelInfo:
    """Catalog metadata of ``name``; ``ModelNotFound`` when it has no active version."""
    catalog = _specs.get_or_load(("catalog",), _load_catalog)
    info = catalog.get(name)
    if info is None:
        _resolve(name, None)  # raises the precise ModelNotFound
        raise ModelNotFound(f"Model {name!r} has no active version.")
    return _with_provider(info)


def model_version_get(*, name: str, version: int) -> ModelVersion:
    """One registry row (any status), for commands and admin; ``ModelVersionNotFound`` otherwise."""
    row = ModelVersion.objects.filter(name=name, version=version).first()
    if row is None:
        raise ModelVersionNotFound(f"Model {name!r} has no version {version}.")
    return row


def model_versions_list(*, name: str | None = None) -> QuerySet[ModelVersion]:
    """Registry rows, newest version first within each name."""
    rows = ModelVersion.objects.order_by("name", "-version")
    return rows.filter(name=name) if name else rows


def rollout_current_get(*, name: str) -> ModelRollout | None:
    """``name``'s rollout in progress, else its most recent one (commands, admin); ``None`` if it never had one."""
    rollouts = ModelRollout.objects.filter(name=name)
    return rollouts.filter(state=ModelRollout.State.ACTIVE).first() or rollouts.order_by("-created_at", "-pk").first()


def model_readiness() -> dict[str, Any]:
    """The ``model`` readiness check: the default model loads and answers; raises otherwise.

    A process serving a fallback is still ready (it answers correctly), and
    says so, naming the active version it could not load.
    """
    name = settings.DEFAULT_MODEL_NAME
    model = model_serving_get(name=name)
    report: dict[str, Any] = {
        "name": model.name,
        "version": model.version,
        "provider": model.provider,
        "sha256": model.sha256[:12],
    }
    active = _resolve(name, None)
    if active.version != model.version:
        report["degraded"] = f"active version {active.ref} failed verification; serving {model.ref}"
    return report


def serving_caches_clear() -> None:
    """Forget cached registry state, sessions and fallbacks of this process (tests, shell)."""
    _specs.clear()
    _last_good.clear()
    _options.clear()
    sessions.clear()
