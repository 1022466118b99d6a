"""ONNX Runtime against TensorFlow on the same trained model, single-threaded, in one run.

Used by ``manage.py bench_inference`` and ``python bench/inference.py``; no
Django.  One model is trained (a few epochs are plenty: speed does not depend
on accuracy), exported through the same tf2onnx path and parity gate as the
registry's models, and then each engine is timed at batch 1 and 64:

* ``onnxruntime``: ``session.run`` on a single-threaded CPU session (what the gateway does per request);
* ``tf model(x)``: the Keras model called eagerly;
* ``tf predict``: ``model.predict(x)``, which builds a data pipeline per call.

Every call's latency is recorded; the report gives the median, p99,
throughput (instances per second) and the ratio of ORT's median latency to
each TensorFlow path's, and checks that all three produce the same outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

DEFAULT_EPOCHS = 10
DEFAULT_ITERATIONS = 300
DEFAULT_SECONDS_PER_CASE = 3.0
BATCH_SIZES = (1, 64)
AGREEMENT_TOLERANCE = 1e-5


def _time_calls(call: Callable[[], Any], *, iterations: int, seconds: float, warmup: int) -> np.ndarray:
    """Latencies in milliseconds: up to ``iterations`` calls, stopping after ``seconds`` (at least 20 calls)."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < iterations and (len(samples) < 20 or time.perf_counter() < deadline):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return np.asarray(samples)


def _summary(case: str, batch: int, latencies: np.ndarray) -> dict[str, Any]:
    return {
        "case": case,
        "batch": batch,
        "iterations": len(latencies),
        "median_ms": round(float(np.median(latencies)), 4),
        "p99_ms": round(float(np.percentile(latencies, 99)), 4),
        "mean_ms": round(float(latencies.mean()), 4),
        "throughput_per_s": round(batch * len(latencies) / (latencies.sum() / 1000.0), 1),
    }


def run_benchmark(
    *,
    epochs: int = DEFAULT_EPOCHS,
    iterations: int = DEFAULT_ITERATIONS,
    seconds_per_case: float = DEFAULT_SECONDS_PER_CASE,
    data_path: str | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Train, export and time both engines; return the report (``agreement.ok`` says if outputs match)."""
    started = time.perf_counter()
    from inference import training

    tf, _ = training.import_tensorflow()
    # Single-threaded on both sides: the comparison is per core, as each gateway worker is configured.
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        # TensorFlow already ran an op in this process (e.g. under a test runner): its pools are
        # fixed now, and the report states the thread counts actually in effect.
        log("TensorFlow was already initialised; its thread settings cannot change in this process")
    import onnxruntime as ort

    from inference.runtime import session_options

    log(f"training the benchmark model ({epochs} epochs)...")
    result = training.train_model(training.TrainingConfig(epochs=epochs, data_path=data_path))
    model = result.keras_model
    session = ort.InferenceSession(
        result.onnx_bytes, session_options(intra_op_threads=1), providers=["CPUExecutionProvider"]
    )
    x_all = result.dataset.x_test
    results: list[dict[str, Any]] = []
    agreement: dict[str, Any] = {"tolerance": AGREEMENT_TOLERANCE, "max_abs_diff": 0.0, "argmax_identical": True}
    for batch in BATCH_SIZES:
        x = np.ascontiguousarray(np.resize(x_all, (batch, x_all.shape[1])), dtype=np.float32)
        cases: dict[str, Callable[[], np.ndarray]] = {
            "onnxruntime": lambda x=x: session.run([training.OUTPUT_NAME], {training.INPUT_NAME: x})[0],
            "tf model(x)": lambda x=x: model(x, training=False).numpy(),
            "tf predict": lambda x=x: model.predict(x, verbose=0, batch_size=len(x)),
        }
        outputs = {name: np.asarray(call()) for name, call in cases.items()}
        reference = outputs["onnxruntime"]
        for name in ("tf model(x)", "tf predict"):
            diff = float(np.max(np.abs(outputs[name] - reference)))
            agreement["max_abs_diff"] = max(agreement["max_abs_diff"], diff)
            if not np.array_equal(outputs[name].argmax(axis=1), reference.argmax(axis=1)):
                agreement["argmax_identical"] = False
        for name, call in cases.items():
            log(f"timing {name} at batch {batch}...")
            latencies = _time_calls(
                call, iterations=iterations, seconds=seconds_per_case, warmup=3 if name == "tf predict" else 10
            )
            results.append(_summary(name, batch, latencies))
    agreement["ok"] = agreement["argmax_identical"] and agreement["max_abs_diff"] <= AGREEMENT_TOLERANCE
    by_case = {(r["case"], r["batch"]): r for r in results}
    ratios = []
    for batch in BATCH_SIZES:
        ort_median = by_case[("onnxruntime", batch)]["median_ms"]
        ratios.append(
            {
                "batch": batch,
                "ort_over_tf_call": round(ort_median / by_case[("tf model(x)", batch)]["median_ms"], 5),
                "ort_over_tf_predict": round(ort_median / by_case[("tf predict", batch)]["median_ms"], 5),
            }
        )
    return {
        "model": {
            "input_width": result.input_width,
            "classes": len(result.labels),
            "epochs": epochs,
            "held_out_accuracy": result.metrics["accuracy"],
            "dataset": result.lineage["dataset"],
        },
        "settings": {
            "ort_intra_op_threads": session.get_session_options().intra_op_num_threads,
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "provider": session.get_providers()[0],
            "onnxruntime": ort.__version__,
            "tensorflow": tf.__version__,
            "iterations_max": iterations,
            "seconds_per_case": seconds_per_case,
        },
        "results": results,
        "ratios": ratios,
        "agreement": agreement,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _speed(ratio: float) -> str:
    return f"ORT {1 / ratio:.1f}x faster" if ratio <= 1 else f"ORT {ratio:.1f}x slower"


def format_report(report: dict[str, Any]) -> str:
    """The human-readable table."""
    m, s = report["model"], report["settings"]
    lines = [
        f"model: MLP on {m['input_width']} inputs, {m['classes']} classes, {m['epochs']} epochs, "
        f"held-out accuracy {m['held_out_accuracy']:.4f}",
        f"settings: onnxruntime {s['onnxruntime']} ({s['provider']}, {s['ort_intra_op_threads']} thread), "
        f"tensorflow {s['tensorflow']} (intra-op {s['tf_intra_op_threads']}, inter-op {s['tf_inter_op_threads']}; "
        "0 = TensorFlow's default)",
        "",
        f"{'case':<14}{'batch':>6}{'calls':>7}{'median ms':>12}{'p99 ms':>11}{'instances/s':>14}",
    ]
    for r in report["results"]:
        lines.append(
            f"{r['case']:<14}{r['batch']:>6}{r['iterations']:>7}{r['median_ms']:>12.4f}{r['p99_ms']:>11.4f}"
            f"{r['throughput_per_s']:>14,.0f}"
        )
    lines.append("")
    lines.append("median latency ratio ORT / TF (below 1: ORT is faster):")
    for r in report["ratios"]:
        lines.append(
            f"  batch {r['batch']:>3}: vs model(x) {r['ort_over_tf_call']:.4f} ({_speed(r['ort_over_tf_call'])}), "
            f"vs predict {r['ort_over_tf_predict']:.4f} ({_speed(r['ort_over_tf_predict'])})"
        )
    a = report["agreement"]
    verdict = "yes" if a["ok"] else "NO"
    lines.append(
        f"outputs agree: {verdict} (max |ORT - TF| {a['max_abs_diff']:.2e}, tolerance {a['tolerance']:g}, "
        f"argmax identical: {'yes' if a['argmax_identical'] else 'no'})"
    )
    lines.append(f"total {report['seconds']} s")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options shared by the script and the management command."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return parser


def add_arguments(parser: Any) -> None:
    """Add the benchmark's options to ``parser`` (argparse or a Django command's parser)."""
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="Training epochs of the benchmark model.")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="Most timed calls per case.")
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS_PER_CASE, help="Time budget per case (at least 20 calls)."
    )
    parser.add_argument("--data", default=None, help="Keras MNIST .npz file instead of scikit-learn's digits.")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON (progress goes to stderr).")


def main(argv: list[str] | None = None) -> int:
    """Run from the command line; exit status 1 when the engines disagree."""
    args = build_parser().parse_args(argv)
    report = run_benchmark(
        epochs=args.epochs,
        iterations=args.iterations,
        seconds_per_case=args.seconds,
        data_path=args.data,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["agreement"]["ok"] else 1
