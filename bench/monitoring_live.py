"""Cost of live statistics in the request path, per instance, at batch 1 and batch 64.

What ``GovernedCall`` adds to a served batch for post-market monitoring
(``monitoring.live``): bin every feature against the reference profile's
edges, count predicted labels and top-class confidence, add the counts to the
process's window under its lock.  No Django, no database: the flush happens
outside the request.  Target: under 20 µs per instance at batch 1.

    python bench/monitoring_live.py [--width 64] [--classes 10] [--repeat 20000] [--json]

``make bench`` (``bench/run.py``) runs it with ``--json`` and reports it against the target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.profile import reference_profile_build
from monitoring.live import LiveBins, LiveStats, batch_counts


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def measure(*, width: int, classes: int, batch: int, repeat: int, rounds: int = 5) -> dict[str, float]:
    """Median µs per call and per instance of one batch's counting (best of ``rounds`` medians)."""
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 17, size=(500, width)).astype(np.float32)
    profile = reference_profile_build(
        features=reference,
        kind="probabilities",
        labels=list(range(classes)),
        probabilities=_softmax(rng.normal(size=(500, classes))),
        source="bench",
    )
    bins = LiveBins.from_profile(profile, kind="probabilities", n_labels=classes)
    stats = LiveStats(window_seconds=300)
    x = rng.integers(0, 17, size=(batch, width)).astype(np.float32)
    probabilities = _softmax(rng.normal(size=(batch, classes)))
    medians = []
    for _ in range(rounds):
        samples = []
        for _ in range(repeat // rounds):
            started = time.perf_counter_ns()
            counts = batch_counts(bins=bins, features=x, probabilities=probabilities, review_flags=0)
            stats.add_batch(name="bench", version=1, bins=bins, batch=counts)
            samples.append(time.perf_counter_ns() - started)
        medians.append(statistics.median(samples) / 1000.0)
    per_call = min(medians)
    return {"batch": batch, "per_call_us": round(per_call, 2), "per_instance_us": round(per_call / batch, 3)}


def main() -> None:
    """Print the cost at batch 1 and 64."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20000)
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()
    results = [measure(width=args.width, classes=args.classes, batch=b, repeat=args.repeat) for b in (1, 64)]
    if args.json:
        print(json.dumps({"width": args.width, "classes": args.classes, "batches": results}))
        return
    for result in results:
        batch = result["batch"]
        print(
            f"width {args.width}, batch {batch}: {result['per_call_us']} µs per batch, "
            f"{result['per_instance_us']} µs per instance"
        )


if __name__ == "__main__":
    main()
