"""The Django-free serving core: verified loads, provider choice, one session per version."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import onnxruntime as ort
import pytest

from inference import runtime
from inference.runtime import CPU_PROVIDER, CUDA_PROVIDER, ModelLoadError, ModelSpec, SessionRegistry
from policy.evaluator import ModelFacts


@pytest.mark.parametrize(
    ("available", "preferred", "expected"),
    [
        ([CUDA_PROVIDER, CPU_PROVIDER], None, [CUDA_PROVIDER, CPU_PROVIDER]),
        (["TensorrtExecutionProvider", CUDA_PROVIDER, CPU_PROVIDER], None, [CUDA_PROVIDER, CPU_PROVIDER]),
        (["AzureExecutionProvider", CPU_PROVIDER], None, [CPU_PROVIDER]),
        ([CPU_PROVIDER], None, [CPU_PROVIDER]),
        ([CUDA_PROVIDER, CPU_PROVIDER], [CPU_PROVIDER], [CPU_PROVIDER]),
        ([CUDA_PROVIDER, CPU_PROVIDER], [CUDA_PROVIDER], [CUDA_PROVIDER, CPU_PROVIDER]),
        ([CPU_PROVIDER], [CUDA_PROVIDER, CPU_PROVIDER], [CPU_PROVIDER]),
    ],
)
def test_provider_selection(monkeypatch, available, preferred, expected):
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(available))
    assert runtime.select_providers(preferred=preferred) == expected


def test_missing_preferred_provider_is_logged(monkeypatch, caplog):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU_PROVIDER])
    runtime.select_providers(preferred=["OpenVINOExecutionProvider"])
    assert any("not available" in r.getMessage() for r in caplog.records)


def test_loaded_model_reports_the_provider_actually_in_use(spec):
    # Even when CUDA is requested, this CPU-only build runs on the CPU provider, and says so.
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
        model = runtime.load_model(spec, providers=[CUDA_PROVIDER, CPU_PROVIDER])
    assert model.provider == CPU_PROVIDER == model.session.get_providers()[0]


def test_thread_count_is_applied(spec):
    model = runtime.load_model(spec, providers=[CPU_PROVIDER], intra_op_threads=2)
    assert model.session.get_session_options().intra_op_num_threads == 2
    assert model.session.get_session_options().inter_op_num_threads == 1


def test_served_model_runs_batches_and_describes_itself(spec, trained):
    model = runtime.load_model(spec, providers=[CPU_PROVIDER])
    out = model.run(trained.dataset.x_test[:5])
    assert out.shape == (5, 10)
    assert model.facts() == ModelFacts(name="digits", version=1, risk_tier="limited", region="eu")
    assert (model.input_name, model.output_name, model.input_width, model.labels) == (
        "pixels",
        "probabilities",
        64,
        list(range(10)),
    )


def test_missing_file_is_refused_naming_the_version(spec, tmp_path):
    Path(spec.path).unlink()
    with pytest.raises(ModelLoadError, match=r"model digits@1 refused: file .* is missing") as caught:
        runtime.read_verified(spec)
    assert caught.value.public_reason == "its model file is missing"
    assert str(tmp_path) not in caught.value.public_reason


def test_truncated_file_is_refused(spec):
    with open(spec.path, "r+b") as fh:
        fh.truncate(spec.file_size // 2)
    with pytest.raises(ModelLoadError, match="truncated"):
        runtime.read_verified(spec)


def test_altered_file_is_refused(spec):
    data = bytearray(Path(spec.path).read_bytes())
    data[-100] ^= 0xFF
    Path(spec.path).write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="was altered") as caught:
        runtime.load_model(spec, providers=[CPU_PROVIDER])
    assert "SHA-256" in caught.value.public_reason


def test_signature_mismatch_is_refused(spec):
    wrong = ModelSpec(**{**spec.__dict__, "input_name": "images"})
    with pytest.raises(ModelLoadError, match=r"expected inputs \['images'\]"):
        runtime.load_model(wrong, providers=[CPU_PROVIDER])
    with pytest.raises(ModelLoadError, match=r"expected \(1, 3\)"):
        runtime.load_model(ModelSpec(**{**spec.__dict__, "labels": (0, 1, 2)}), providers=[CPU_PROVIDER])


def test_registry_creates_one_session_per_version_across_threads(monkeypatch, spec):
    registry = SessionRegistry()
    calls = []
    real = runtime.load_model

    def counting(*args, **kwargs):
        calls.append(1)
        time.sleep(0.05)  # widen the window in which a racing thread could load a second session
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime, "load_model", counting)
    got = []
    threads = [
        threading.Thread(target=lambda: got.append(registry.get(spec, providers=[CPU_PROVIDER]))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len({id(model) for model in got}) == 1 and len(got) == 8
    assert registry.peek("digits", 1) is got[0] and registry.loaded() == [got[0]]


def test_failed_load_is_remembered_then_retried(spec, onnx_bytes):
    registry = SessionRegistry(retry_seconds=60)
    original = Path(spec.path).read_bytes()
    Path(spec.path).write_bytes(b"garbage")
    with pytest.raises(ModelLoadError) as first:
        registry.get(spec, providers=[CPU_PROVIDER])
    assert first.value.fresh
    Path(spec.path).write_bytes(original)
    with pytest.raises(ModelLoadError) as remembered:
        registry.get(spec, providers=[CPU_PROVIDER])
    assert not remembered.value.fresh
    registry.retry_seconds = 0
    assert registry.get(spec, providers=[CPU_PROVIDER]).version == 1


def test_loaded_session_keeps_serving_after_its_file_changes(spec, trained):
    registry = SessionRegistry()
    model = registry.get(spec, providers=[CPU_PROVIDER])
    Path(spec.path).write_bytes(b"corrupted after load")
    # Sessions are built from verified bytes held in memory: the running version is unaffected.
    assert registry.get(spec, providers=[CPU_PROVIDER]) is model
    assert model.run(trained.dataset.x_test[:2]).shape == (2, 10)


def test_load_warms_the_session_up_once(monkeypatch, spec):
    runs = []
    real = runtime.ServedModel.run

    def counting(self, batch):
        runs.append(batch.shape)
        return real(self, batch)

    monkeypatch.setattr(runtime.ServedModel, "run", counting)
    registry = SessionRegistry()
    registry.get(spec, providers=[CPU_PROVIDER])
    registry.get(spec, providers=[CPU_PROVIDER])
    assert runs == [(1, 64)]
