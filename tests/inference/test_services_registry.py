"""The governed registry: registration, training, activation, rollback, retirement."""

from __future__ import annotations

import hashlib

import onnx
import pytest
from django.db import IntegrityError, transaction

from audit.models import AuditEvent
from core.errors import InvalidInput
from core.models import Generation
from inference import training
from inference.errors import InvalidModelFile, ModelIntegrityFailed, ModelLifecycleConflict, TrainingFailed
from inference.models import ModelVersion
from inference.services import (
    NO_TRAINING_LINEAGE,
    model_version_activate,
    model_version_register,
    model_version_retire,
    model_version_rollback,
    model_version_train,
    model_version_update,
)
from tests.inference.factories import COMPLETE_CARD

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _lifecycle(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type="model.lifecycle", action=action))


def _models_generation() -> int:
    row = Generation.objects.filter(kind="models").first()
    return row.value if row else 0


def _without_metadata(data: bytes) -> bytes:
    model = onnx.load_model_from_string(data)
    del model.metadata_props[:]
    return model.SerializeToString()


def test_registration_stores_file_checksum_and_signature(register, onnx_bytes, model_store):
    version = register()
    assert (version.name, version.version, version.status) == ("digits", 1, "staged")
    path = model_store / "digits" / "1" / "model.onnx"
    assert version.file_path == "digits/1/model.onnx" and version.absolute_path() == path
    assert path.read_bytes() == onnx_bytes
    assert version.sha256 == hashlib.sha256(onnx_bytes).hexdigest() and version.file_size == len(onnx_bytes)
    assert version.signature["inputs"] == [{"name": "pixels", "dtype": "float32", "shape": ["batch", 64]}]
    assert version.signature["outputs"][0]["name"] == "probabilities"
    assert version.input_width == 64
    # Labels and value range come from the metadata the exporter wrote into the file.
    assert version.labels == list(range(10)) and (version.value_min, version.value_max) == (0.0, 16.0)
    assert (version.risk_tier, version.region) == ("limited", "eu")
    assert not any(p.name.startswith(".staged") for p in (model_store / "digits").iterdir())
    (event,) = _lifecycle("model.register")
    assert event.actor == "test"
    assert event.detail["target"] == "digits@1" and event.detail["model_sha256"] == version.sha256


def test_registered_files_have_no_training_lineage(register):
    version = register()
    assert version.lineage["training"] == NO_TRAINING_LINEAGE == "no training lineage"
    assert version.accuracy is None


def test_versions_are_numbered_per_name(register):
    assert [register().version for _ in range(3)] == [1, 2, 3]
    assert register("other").version == 1


def test_foreign_file_must_state_its_value_range(register, onnx_bytes):
    bare = _without_metadata(onnx_bytes)
    with pytest.raises(InvalidInput, match="value range"):
        register(data=bare)
    version = register(data=bare, value_max=16, labels=list("abcdefghij"))
    assert version.labels == list("abcdefghij") and version.value_max == 16.0


def test_label_count_must_match_outputs(register):
    with pytest.raises(InvalidModelFile, match="10 output classes but 3 labels"):
        register(labels=[0, 1, 2])


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"not an onnx file", "not a valid ONNX model"), (b"", "not a valid ONNX model")],
)
def test_unreadable_files_are_refused(data, message):
    with pytest.raises(InvalidModelFile, match=message):
        model_version_register(name="digits", data=data, actor="test", value_max=16)
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad Name"}, "Invalid model name"),
        ({"risk_tier": "extreme"}, "Unknown risk tier"),
        ({"region": ""}, "region"),
        ({"value_min": 5, "value_max": 5}, "empty"),
    ],
)
def test_governance_fields_are_checked(register, fields, message):
    with pytest.raises(InvalidInput, match=message):
        register(**fields)


def test_activation_makes_one_version_active_and_bumps_generation(register):
    first, second = register(), register()
    before = _models_generation()
    model_version_activate(version=first, actor="staff:alice")
    model_version_activate(version=second, actor="staff:alice")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("staged", "active")
    assert first.activated_at < second.activated_at
    assert _models_generation() == before + 2
    events = _lifecycle("model.activate")
    assert [e.detail["after"]["active"] for e in events] == ["digits@1", "digits@2"]
    assert events[1].detail["before"] == {"active": "digits@1"} and events[1].actor == "staff:alice"


def test_activating_the_active_version_is_a_no_op(register):
    version = register(activate=True)
    before = _models_generation()
    model_version_activate(version=version, actor="test")
    assert _models_generation() == before and len(_lifecycle("model.activate")) == 1


def test_database_allows_only_one_active_version_per_name(register):
    register(activate=True)
    second = register()
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=second.pk).update(status="active")
    other = register("other")
    ModelVersion.objects.filter(pk=other.pk).update(status="active")  # another name is fine
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(
            name="digits", version=1, file_path="x", sha256="0" * 64, file_size=1, input_width=1,
            value_min=0, value_max=1, created_by="test",
        )  # fmt: skip


def test_rollback_reactivates_the_previous_version(register):
    first = register(activate=True)
    register(activate=True)
    rolled = model_version_rollback(name="digits", actor="command:activate_model")
    assert rolled.pk == first.pk and rolled.status == "active"
    assert ModelVersion.objects.get(version=2).status == "staged"
    (event,) = _lifecycle("model.rollback")
    assert event.detail["before"] == {"active": "digits@2"} and event.detail["after"] == {"active": "digits@1"}


def test_rollback_skips_never_activated_and_retired_versions(register):
    register(activate=True)
    second = register(activate=True)
    register()  # staged, never active
    third = register(activate=True)
    model_version_retire(version=ModelVersion.objects.get(version=1), actor="test")
    assert model_version_rollback(name="digits", actor="test").pk == second.pk
    assert ModelVersion.objects.get(pk=third.pk).status == "staged"


def test_rollback_without_an_earlier_version_is_refused(register):
    register(activate=True)
    with pytest.raises(ModelLifecycleConflict, match="no earlier active version"):
        model_version_rollback(name="digits", actor="test")


def test_retirement_rules(register):
    active = register(activate=True)
    staged = register()
    with pytest.raises(ModelLifecycleConflict, match="is active"):
        model_version_retire(version=active, actor="test")
    retired = model_version_retire(version=staged, actor="test")
    assert retired.status == "retired" and retired.retired_at is not None
    with pytest.raises(ModelLifecycleConflict, match="retired"):
        model_version_activate(version=retired, actor="test")
    assert len(_lifecycle("model.retire")) == 1


def test_activation_refuses_a_file_that_fails_verification(register):
    register(activate=True)
    broken = register()
    path = broken.absolute_path()
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelIntegrityFailed, match=r"digits@2 failed verification: .*truncated"):
        model_version_activate(version=broken, actor="test")
    path.unlink()
    with pytest.raises(ModelIntegrityFailed, match=r"digits@2 failed verification: .*missing"):
        model_version_activate(version=broken, actor="test")
    assert ModelVersion.objects.get(status="active").version == 1


def test_activation_rolls_back_when_the_audit_trail_is_down(register, monkeypatch):
    from audit.errors import AuditUnavailable
    from inference.services import registry

    first = register(activate=True)
    second = register()

    def down(**kwargs):
        raise AuditUnavailable("down")

    monkeypatch.setattr(registry, "audit_change_record", down)
    with pytest.raises(AuditUnavailable):
        model_version_activate(version=second, actor="test")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("active", "staged")


def test_governance_update_is_audited_and_invalidates_caches(register):
    version = register(activate=True)
    before = _models_generation()
    updated = model_version_update(
        version=version, actor="staff:bob", risk_tier="high", region="cn", card=COMPLETE_CARD
    )
    assert (updated.risk_tier, updated.region) == ("high", "cn")
    assert _models_generation() == before + 1
    (event,) = _lifecycle("model.update")
    assert event.detail["before"] == {"risk_tier": "limited", "region": "eu", "card": {}}
    with pytest.raises(InvalidInput):
        model_version_update(version=version, actor="staff:bob", risk_tier="extreme")


def test_training_service_registers_metrics_lineage_and_card(fake_training, trained):
    version = model_version_train(
        actor="command:train_model", epochs=3, activate=True, region="us", risk_tier="minimal"
    )
    assert fake_training[0].epochs == 3
    assert version.status == "active" and version.accuracy == trained.metrics["accuracy"]
    assert version.metrics["parity"]["max_abs_diff"] <= 1e-5
    assert version.lineage["data_fingerprint"] == trained.lineage["data_fingerprint"]
    assert version.lineage["frameworks"] and version.lineage["opset"] == 17
    assert version.model_card.startswith("# Model card: digits") and "region: us" in version.model_card
    assert (version.region, version.risk_tier, version.created_by) == ("us", "minimal", "command:train_model")
    assert [e.action for e in AuditEvent.objects.order_by("seq")] == ["model.train", "model.activate"]


def test_refused_training_registers_nothing_and_is_audited(monkeypatch):
    def refuse(config=None, *, progress=None):
        raise training.ParityError("Export refused by the parity gate: drift", figures={"max_abs_diff": 0.1})

    monkeypatch.setattr(training, "train_model", refuse)
    with pytest.raises(TrainingFailed, match="parity gate") as caught:
        model_version_train(actor="test")
    assert caught.value.extra["figures"] == {"max_abs_diff": 0.1}
    assert not ModelVersion.objects.exists()
    (event,) = _lifecycle("model.train_refused")
    assert "parity gate" in event.detail["error"]
