"""Structured model cards for every version, the high-risk activation check, reference profiles and exports."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from inference.errors import InvalidReferenceData, ModelCardIncomplete
from inference.model_card import STATED_FIELDS, card_build, card_html
from inference.services import model_version_activate, model_version_train, model_version_update
from tests.inference.factories import COMPLETE_CARD
from tests.onnx_models import classifier, regression

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_a_trained_version_has_a_card_and_a_profile_of_its_held_out_set(fake_training, trained):
    version = model_version_train(actor="test", epochs=2)
    card = card_build(version)
    assert list(STATED_FIELDS) == [k for k in card if k in STATED_FIELDS]
    assert "handwritten digit" in card["intended_purpose"] and card["out_of_scope_uses"]
    assert trained.lineage["data_fingerprint"] in card["training_data"]
    assert card["metrics_per_class"]["0"]["recall"] == trained.metrics["per_class_recall"]["0"]
    assert card["risk_rationale"] == ""  # the operator's to state
    profile = card["reference_profile"]
    assert profile["instances"] == len(trained.dataset.x_test) and profile["features_profiled"] == 64
    assert abs(sum(profile["predicted_label_shares"].values()) - 1) < 1e-3
    assert card["notes"].startswith("# Model card: digits")


def test_high_risk_activation_needs_a_complete_card(register):
    version = register(risk_tier="high")
    with pytest.raises(ModelCardIncomplete) as excinfo:
        model_version_activate(version=version, actor="test")
    assert (excinfo.value.status, excinfo.value.code) == (409, "model_card_incomplete")
    assert "intended purpose" in excinfo.value.detail and "why this risk tier" in excinfo.value.detail
    with pytest.raises(CommandError, match="model card lacks"):
        run("activate_model", "digits", "1")
    version = model_version_update(version=version, actor="test", card=COMPLETE_CARD)
    assert model_version_activate(version=version, actor="test").status == "active"
    # Nor can an active high-risk version lose a required field afterwards.
    with pytest.raises(ModelCardIncomplete):
        model_version_update(version=version, actor="test", card={"limitations": ""})


def test_hostile_card_fields_are_refused_and_html_is_escaped(register):
    version = register()
    for bad in ({"purpose": "x"}, {"limitations": 7}, {"metrics_per_class": {"0": {"recall": "high"}}}):
        with pytest.raises(Exception, match="Model card") as excinfo:
            model_version_update(version=version, actor="test", card=bad)
        assert excinfo.value.status == 400
    version = model_version_update(version=version, actor="test", card={"limitations": "<script>alert(1)</script>"})
    page = card_html(version)
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "no reference profile" in page


def test_register_command_profiles_a_reference_file_and_exports_the_card(tmp_path):
    model = tmp_path / "iris.onnx"
    model.write_bytes(classifier())
    rows = np.random.default_rng(3).uniform(0, 5, size=(60, 4))
    np.save(tmp_path / "ref.npy", rows)
    csv = tmp_path / "ref.csv"
    csv.write_text("a,b,c,d\n" + "\n".join(",".join(f"{v:.3f}" for v in row) for row in rows))
    fields = json.dumps({"intended_purpose": "Sort flowers.", "risk_rationale": "No effect on people."})
    run(
        "register_model",
        str(model),
        "--name",
        "iris",
        "--value-max",
        "10",
        "--labels",
        "a,b,c",
        "--reference",
        str(tmp_path / "ref.npy"),
        "--card",
        fields,
    )
    run(
        "register_model",
        str(model),
        "--name",
        "iris",
        "--value-max",
        "10",
        "--labels",
        "a,b,c",
        "--reference",
        str(csv),
    )
    from inference.models import ModelVersion

    first, second = ModelVersion.objects.filter(name="iris").order_by("version")
    assert first.reference_profile["instances"] == 60 and first.card["intended_purpose"] == "Sort flowers."
    # The CSV holds the same rows to three decimals: the same quantile edges, to that precision.
    assert np.allclose(
        first.reference_profile["features"]["inner_edges"],
        second.reference_profile["features"]["inner_edges"],
        atol=2e-3,
    )
    out = tmp_path / "card.json"
    run("model_card", "iris", "1", "--format", "json", "--output", str(out))
    exported = json.loads(out.read_text())
    assert exported["reference_profile"]["source"] == "reference file ref.npy"
    assert set(exported["reference_profile"]["predicted_label_shares"]) == {"a", "b", "c"}
    html = run("model_card", "iris", "2", "--format", "html", "--limitations", "Toy data.")
    assert "<h2>Limitations</h2><p>Toy data.</p>" in html
    # Without a reference: the card says so, and drift cannot be measured for that version.
    run("register_model", str(model), "--name", "iris", "--value-max", "10", "--labels", "a,b,c")
    assert card_build(ModelVersion.objects.get(name="iris", version=3))["reference_profile"] is None


def test_unusable_reference_data_is_refused(tmp_path, register):
    model = tmp_path / "price.onnx"
    model.write_bytes(regression())
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((40, 5)))
    with pytest.raises(CommandError, match=r"expected \[3\]"):
        run("register_model", str(model), "--name", "price", "--value-max", "10", "--reference", str(wrong))
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((40, 3), np.nan))
    with pytest.raises(CommandError, match="NaN or infinity"):
        run("register_model", str(model), "--name", "price", "--value-max", "10", "--reference", str(nan))
    few = tmp_path / "few.csv"
    few.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(CommandError, match="at least 20"):
        run("register_model", str(model), "--name", "price", "--value-max", "10", "--reference", str(few))
    pickle = tmp_path / "obj.npy"
    np.save(pickle, np.asarray([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CommandError, match="cannot be read"):
        run("register_model", str(model), "--name", "price", "--value-max", "10", "--reference", str(pickle))
    text = tmp_path / "bad.csv"
    text.write_text("1,2,3\nx,y,z\n")
    with pytest.raises(CommandError, match="line 2 is not all numbers"):
        run("register_model", str(model), "--name", "price", "--value-max", "10", "--reference", str(text))
    with pytest.raises(InvalidReferenceData):
        from inference.services import model_version_reference_set

        model_version_reference_set(version=register(), actor="test", reference=np.zeros((30, 7)))
    assert not __import__("inference.models").models.ModelVersion.objects.filter(name="price").exists()


def test_reference_profile_can_be_added_after_registration(tmp_path, register, digit_rows):
    version = register()
    assert version.reference_profile is None
    data = tmp_path / "digits.npz"
    np.savez(data, x=digit_rows[:100], y=np.arange(100) % 10)
    output = run("model_reference_profile", "digits", "1", str(data))
    assert "reference profile of 100 instances" in output
    version.refresh_from_db()
    assert version.reference_profile["true_labels"]["counts"] == [10] * 10
