"""The epoch progress line shared by the training commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

BAR_WIDTH = 24


def epoch_progress_printer(stdout: Any) -> Callable[[Any], None]:
    """A callback that draws one updating bar on a terminal, or one line per epoch in a log."""
    interactive = stdout.isatty()

    def show(step: Any) -> None:
        done = int(BAR_WIDTH * step.epoch / step.epochs)
        line = (
            f"  epoch {step.epoch:>3}/{step.epochs} [{'#' * done:<{BAR_WIDTH}}] "
            f"loss {step.loss:.4f}  accuracy {step.accuracy:.4f}  {step.elapsed:5.1f}s"
        )
        if interactive:
            stdout.write("\r" + line, ending="\n" if step.epoch == step.epochs else "")
            stdout.flush()
        else:
            stdout.write(line)

    return show
