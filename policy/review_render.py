"""How a queued prediction is shown to its reviewer: a probability chart and the input as a person sees it.

Pure functions returning escaped SVG (no JavaScript, no CDN).  The input is
read from the request's audit event, where it exists only when the data
minimisation policy retained the raw input; otherwise the page says that only
a digest is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any


def probability_chart_svg(*, probabilities: Sequence[float], labels: Sequence[Any], predicted: str) -> str:
    """Horizontal bars, one per class, the predicted class highlighted; each bar has its value as text."""
    row, width, left = 18, 260, 46
    height = row * len(probabilities) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="maas-prob-chart" width="{left + width + 60}" '
        f'height="{height}" role="img" aria-label="class probabilities">'
    ]
    for index, value in enumerate(probabilities):
        label = str(labels[index]) if index < len(labels) else str(index)
        y = 2 + index * row
        bar = max(0.0, min(1.0, float(value))) * width
        colour = "#1565c0" if label == str(predicted) else "#90a4ae"
        parts.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end" font-size="12">{escape(label)}</text>'
            f'<rect x="{left}" y="{y + 2}" width="{bar:.1f}" height="{row - 5}" fill="{colour}">'
            f"<title>{escape(label)}: {float(value):.4f}</title></rect>"
            f'<text x="{left + bar + 4:.1f}" y="{y + 13}" font-size="11">{float(value):.3f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def digit_image_svg(*, values: Sequence[float], value_max: float = 16.0, cell: int = 18) -> str | None:
    """A square grey-scale image of a flattened square input (the 8x8 digits); ``None`` if it is not square."""
    side = math.isqrt(len(values))
    if side * side != len(values) or side == 0:
        return None
    top = value_max or max(values) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="maas-digit" width="{side * cell}" height="{side * cell}" '
        f'role="img" aria-label="input image {side}x{side}">'
    ]
    for index, value in enumerate(values):
        shade = 255 - round(255 * max(0.0, min(1.0, float(value) / top)))
        x, y = (index % side) * cell, (index // side) * cell
        parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgb({shade},{shade},{shade})"/>')
    parts.append("</svg>")
    return "".join(parts)
