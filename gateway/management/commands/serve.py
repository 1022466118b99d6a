"""``manage.py serve``: gunicorn, a Celery worker and Celery beat in the foreground.

All three share this terminal's process group, so Ctrl-C reaches each of them;
this supervisor then waits for them to exit (escalating to SIGTERM, then
SIGKILL) so that nothing is left behind.  If any child dies, the others are
stopped too: a half-running gateway is worse than a stopped one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from core.env import VAR_DIR


def _prometheus_dir() -> str:
    path = VAR_DIR / "prometheus"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


class Command(BaseCommand):
    """Serve the gateway with its worker and scheduler until interrupted."""

    help = "Run gunicorn, a Celery worker and Celery beat in the foreground."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=3)
        parser.add_argument("--no-celery", action="store_true", help="Serve HTTP only.")

    def handle(self, *args, **options) -> None:
        env = dict(os.environ)
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", _prometheus_dir())
        bin_dir = os.path.dirname(sys.executable)
        commands = {
            "web": [
                os.path.join(bin_dir, "gunicorn"),
                "gateway.wsgi:application",
                "--bind",
                f"{options['host']}:{options['port']}",
                "--workers",
                str(options["workers"]),
                "--config",
                "python:gateway.gunicorn_conf",
            ],
        }
        if not options["no_celery"]:
            commands["worker"] = [
                os.path.join(bin_dir, "celery"),
                "-A",
                "gateway",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
            ]
            commands["beat"] = [
                os.path.join(bin_dir, "celery"),
                "-A",
                "gateway",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ]
        procs = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}
        self.stdout.write(
            f"==> serving on http://{options['host']}:{options['port']} ({', '.join(procs)}); Ctrl-C stops everything"
        )
        stopping = False

        def _stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        try:
            while not stopping and all(p.poll() is None for p in procs.values()):
                time.sleep(0.3)
        finally:
            self._shutdown(procs)

    def _shutdown(self, procs: dict[str, subprocess.Popen]) -> None:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in time; killing it")
                proc.kill()
                proc.wait()
        self.stdout.write("==> stopped")
