"""ONNX Runtime vs TensorFlow, single-threaded, on the same trained model.

``python bench/inference.py [--json]`` is the same as ``manage.py bench_inference``
(see :mod:`inference.benchmark`); it needs no database.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on sys.path and its own
# name would shadow the ``inference`` package: put the repository root there.
sys.path[0] = str(ROOT)

from inference.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
