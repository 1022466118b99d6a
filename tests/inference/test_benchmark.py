"""The ORT-vs-TensorFlow benchmark: every case timed, outputs compared, report shapes."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from inference import benchmark


@pytest.fixture(scope="session")
def trained(trained_keras):
    """The benchmark times the Keras model too, so it needs a real training run, not the cached ONNX file."""
    return trained_keras


def test_benchmark_report_covers_every_case(fake_training):
    report = benchmark.run_benchmark(epochs=1, iterations=25, seconds_per_case=0.01)
    cases = {(r["case"], r["batch"]) for r in report["results"]}
    assert cases == {(c, b) for c in ("onnxruntime", "tf model(x)", "tf predict") for b in (1, 64)}
    for row in report["results"]:
        assert row["iterations"] >= 20
        assert 0 < row["median_ms"] <= row["p99_ms"] and row["throughput_per_s"] > 0
    assert [r["batch"] for r in report["ratios"]] == [1, 64]
    assert all(r["ort_over_tf_call"] > 0 and r["ort_over_tf_predict"] > 0 for r in report["ratios"])
    assert report["agreement"]["ok"] and report["agreement"]["max_abs_diff"] <= 1e-5
    assert report["settings"]["ort_intra_op_threads"] == 1
    text = benchmark.format_report(report)
    assert "median ms" in text and "outputs agree: yes" in text and "vs predict" in text


def test_the_command_prints_the_json_report_and_logs_progress_to_stderr(fake_training):
    """``manage.py bench_inference --json``; the standalone ``bench/inference.py`` runs in the bench smoke test."""
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "bench_inference", "--json", "--epochs", "1", "--iterations", "20", "--seconds", "0.01", stdout=out, stderr=err
    )
    report = json.loads(out.getvalue())
    # (TensorFlow's thread settings hold only in a fresh process: the smoke test checks them.)
    assert report["agreement"]["ok"] and report["settings"]["ort_intra_op_threads"] == 1
    assert {(r["case"], r["batch"]) for r in report["results"]} == {
        (c, b) for c in ("onnxruntime", "tf model(x)", "tf predict") for b in (1, 64)
    }
    assert "timing onnxruntime at batch 1" in err.getvalue()
