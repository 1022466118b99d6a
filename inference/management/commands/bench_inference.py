"""``manage.py bench_inference``: ONNX Runtime vs TensorFlow on the same model (see inference.benchmark)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from inference import benchmark


class Command(BaseCommand):
    """Single-threaded latency and throughput of ORT session.run, TF model(x) and model.predict."""

    help = "Benchmark ONNX Runtime against TensorFlow at batch 1 and 64 on the same trained model."

    def add_arguments(self, parser) -> None:
        benchmark.add_arguments(parser)

    def handle(self, *args, **options) -> None:
        report = benchmark.run_benchmark(
            epochs=options["epochs"],
            iterations=options["iterations"],
            seconds_per_case=options["seconds"],
            data_path=options["data"],
            log=(lambda line: self.stderr.write(line)) if options["json"] else self.stdout.write,
        )
        self.stdout.write(json.dumps(report, indent=2) if options["json"] else benchmark.format_report(report))
        if not report["agreement"]["ok"]:
            raise CommandError("ONNX Runtime and TensorFlow outputs disagree.")
