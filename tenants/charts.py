"""Server-side SVG charts for the admin (Django-free, no JavaScript, no CDN).

The tenant page shows three small bar charts over the same days -- requests,
instances, refusals -- each on its own scale: instances are often a hundred
times the requests, and one shared axis would flatten the refusals that an
admin most needs to see.  Each bar carries a ``<title>`` tooltip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape


@dataclass(frozen=True)
class Series:
    """One panel: a label, a colour and one value per day."""

    label: str
    colour: str
    values: Sequence[int]


WIDTH = 720
PANEL_HEIGHT = 96
GAP = 30
LEFT = 64
RIGHT = 12
TOP = 22


def _compact(value: float) -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.0f}"


def usage_chart_svg(*, days: Sequence[date], series: Sequence[Series], title: str = "") -> str:
    """An ``<svg>`` element with one bar panel per series over ``days`` (values aligned with days)."""
    count = max(1, len(days))
    plot_width = WIDTH - LEFT - RIGHT
    slot = plot_width / count
    bar = max(1.0, slot * 0.75)
    height = TOP + len(series) * (PANEL_HEIGHT + GAP) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="maas-usage-chart" role="img" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{escape(title or 'Usage per day')}</title>",
    ]
    for index, item in enumerate(series):
        top = TOP + index * (PANEL_HEIGHT + GAP)
        bottom = top + PANEL_HEIGHT
        peak = max([0, *item.values])
        scale = PANEL_HEIGHT / peak if peak else 0.0
        total = sum(item.values)
        parts.append(
            f'<text x="{LEFT}" y="{top - 6}" font-weight="600" fill="#333">{escape(item.label)} '
            f'<tspan font-weight="400" fill="#666">(total {_compact(total)}, peak {_compact(peak)}/day)</tspan></text>'
        )
        parts.append(f'<text x="{LEFT - 6}" y="{top + 9}" text-anchor="end" fill="#666">{_compact(peak)}</text>')
        parts.append(f'<text x="{LEFT - 6}" y="{bottom}" text-anchor="end" fill="#666">0</text>')
        parts.append(
            f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#bbb" stroke-width="1"/>'
        )
        for position, (day, value) in enumerate(zip(days, item.values, strict=True)):
            bar_height = value * scale
            if value and bar_height < 1:
                bar_height = 1.0  # a non-zero day must stay visible
            x = LEFT + position * slot + (slot - bar) / 2
            parts.append(
                f'<rect x="{x:.1f}" y="{bottom - bar_height:.1f}" width="{bar:.1f}" height="{bar_height:.1f}" '
                f'fill="{escape(item.colour)}"><title>{day.isoformat()}: {value} {escape(item.label.lower())}'
                f"</title></rect>"
            )
    if days:
        last_bottom = TOP + (len(series) - 1) * (PANEL_HEIGHT + GAP) + PANEL_HEIGHT
        for position in sorted({0, (len(days) - 1) // 2, len(days) - 1}):
            x = LEFT + position * slot + slot / 2
            parts.append(
                f'<text x="{x:.1f}" y="{last_bottom + 14}" text-anchor="middle" fill="#666">'
                f"{days[position].strftime('%b %d')}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def quota_bar_svg(*, fraction: float | None, width: int = 220) -> str:
    """A small horizontal gauge of a quota's used share (grey when unlimited)."""
    if fraction is None:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="12" role="img">'
            f'<title>unlimited</title><rect width="{width}" height="12" rx="3" fill="#e8e8e8"/></svg>'
        )
    fraction = min(1.0, max(0.0, fraction))
    colour = "#2e7d32" if fraction < 0.75 else "#f9a825" if fraction < 0.95 else "#c62828"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="12" role="img">'
        f"<title>{fraction * 100:.1f}% used</title>"
        f'<rect width="{width}" height="12" rx="3" fill="#e8e8e8"/>'
        f'<rect width="{fraction * width:.1f}" height="12" rx="3" fill="{colour}"/></svg>'
    )
