"""Management commands: train, register, activate/roll back, retire, list, ensure the default model."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from inference.models import ModelVersion
from tests.support import ROOT, server_env

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_train_model_command_shows_progress_and_registers(fake_training):
    output = run(
        "train_model", "--epochs", "2", "--activate", "--region", "us", "--risk-tier", "high", "--risk-rationale", "why"
    )
    assert "epoch   1/2" in output and "epoch   2/2" in output
    assert "registered digits@1; held-out accuracy" in output and "activated digits@1" in output
    version = ModelVersion.objects.get()
    assert (version.status, version.region, version.risk_tier) == ("active", "us", "high")
    assert version.created_by == "command:train_model"
    assert fake_training[0].epochs == 2


def test_train_model_without_activate_leaves_it_staged(fake_training):
    output = run("train_model", "--name", "digits-small")
    assert "activate_model digits-small 1" in output
    assert ModelVersion.objects.get().status == "staged"


def test_train_model_reports_refusal(monkeypatch):
    from inference import training

    def refuse(config=None, *, progress=None):
        raise training.DatasetError("mnist.npz: no such file")

    monkeypatch.setattr(training, "train_model", refuse)
    with pytest.raises(CommandError, match="no such file"):
        run("train_model", "--data", "mnist.npz")


def test_register_model_command(tmp_path, onnx_bytes):
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_bytes)
    output = run("register_model", str(path), "--name", "imported", "--value-max", "16", "--activate")
    assert "registered imported@1" in output and "activated imported@1" in output
    version = ModelVersion.objects.get(name="imported")
    assert version.lineage["training"] == "no training lineage"
    assert "no training lineage" in version.model_card
    with pytest.raises(CommandError, match="Cannot read"):
        run("register_model", str(tmp_path / "absent.onnx"), "--name", "x")
    path.write_bytes(b"junk")
    with pytest.raises(CommandError, match="not a valid ONNX model"):
        run("register_model", str(path), "--name", "x", "--value-max", "16")


def test_register_model_command_keeps_string_labels_and_regression_ranges(tmp_path):
    from tests import onnx_models

    iris, price = tmp_path / "iris.onnx", tmp_path / "price.onnx"
    iris.write_bytes(onnx_models.classifier())
    price.write_bytes(onnx_models.regression())
    run("register_model", str(iris), "--name", "iris", "--labels", "setosa,versicolor,virginica", "--value-max", "10")
    assert ModelVersion.objects.get(name="iris").labels == ["setosa", "versicolor", "virginica"]
    run(
        "register_model",
        str(price),
        "--name",
        "price",
        "--value-max",
        "1",
        "--plausible-min",
        "0",
        "--plausible-max",
        "9",
    )
    row = ModelVersion.objects.get(name="price")
    assert (row.output_kind, row.plausible_min, row.plausible_max, row.labels) == ("regression", 0.0, 9.0, [])
    with pytest.raises(CommandError, match="classifiers only"):
        run(
            "register_model",
            str(price),
            "--name",
            "p2",
            "--value-max",
            "1",
            "--output-kind",
            "regression",
            "--labels",
            "a",
        )


def test_activate_model_and_roll_back(register):
    register(activate=True)
    register()
    assert "digits@2 is active" in run("activate_model", "digits", "2")
    assert ModelVersion.objects.get(status="active").version == 2
    assert "rolled back: digits@1 is active" in run("activate_model", "digits", "--previous")
    assert ModelVersion.objects.get(status="active").version == 1
    with pytest.raises(CommandError, match="has no version 7"):
        run("activate_model", "digits", "7")
    with pytest.raises(CommandError, match="either a VERSION or --previous"):
        run("activate_model", "digits")


def test_retire_model_command(register):
    register(activate=True)
    register()
    assert "digits@2 is retired" in run("retire_model", "digits", "2")
    with pytest.raises(CommandError, match="is active"):
        run("retire_model", "digits", "1")


def test_list_models_table_and_json(register):
    register(activate=True)
    register()
    table = run("list_models").splitlines()
    assert table[0].split()[:4] == ["NAME", "VER", "STATUS", "ACCURACY"]
    assert table[1].split()[:3] == ["digits", "2", "staged"] and table[2].split()[:3] == ["digits", "1", "active"]
    rows = json.loads(run("list_models", "--json"))
    assert [(r["version"], r["status"]) for r in rows] == [(2, "staged"), (1, "active")]
    assert rows[0]["signature"]["inputs"][0]["shape"] == ["batch", 64] and len(rows[0]["sha256"]) == 64
    assert json.loads(run("list_models", "--json", "--name", "nothing")) == []


def test_list_models_on_empty_registry():
    assert "no models registered" in run("list_models")


def test_ensure_default_model_trains_activates_then_is_idempotent(fake_training, settings):
    settings.DEFAULT_MODEL_NAME = "digits"
    first = run("ensure_default_model")
    assert "activated digits@1" in first
    second = run("ensure_default_model")
    assert "default model is active: digits@1" in second
    assert len(fake_training) == 1 and ModelVersion.objects.count() == 1


def test_ensure_default_model_replaces_a_broken_active_file(fake_training, settings):
    settings.DEFAULT_MODEL_NAME = "digits"
    run("ensure_default_model")
    ModelVersion.objects.get().absolute_path().unlink()
    assert "activated digits@2" in run("ensure_default_model")
    assert ModelVersion.objects.get(status="active").version == 2


def test_ensure_default_model_refuses_low_accuracy(fake_training, settings):
    settings.DEFAULT_MODEL_NAME = "digits"
    with pytest.raises(CommandError, match=r"below 0\.999"):
        run("ensure_default_model", "--min-accuracy", "0.999")
    assert ModelVersion.objects.get().status == "staged"


@pytest.mark.django_db(transaction=True)
def test_serving_path_and_idle_ensure_never_import_tensorflow(register, model_store, settings):
    settings.DEFAULT_MODEL_NAME = "digits"
    register(activate=True)
    script = (
        "import django, sys; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('ensure_default_model')\n"
        "from inference.services import instances_predict\n"
        "import inference.admin, inference.tasks, core.health\n"
        "print(instances_predict(name='digits', instances=[[0.0] * 64]).model_version)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, 'tf2onnx' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=server_env(MODEL_STORE_DIR=str(model_store), DEFAULT_MODEL_NAME="digits"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "default model is active: digits@1" in lines[0]
    assert lines[-2:] == ["1", "False False False"]
