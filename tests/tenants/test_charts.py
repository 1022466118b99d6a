"""The admin's server-side SVG chart."""

from __future__ import annotations

from datetime import date, timedelta
from xml.etree import ElementTree  # our own output, not untrusted input

from tenants.charts import Series, quota_bar_svg, usage_chart_svg


def _parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)  # noqa: S314 - parses the chart this module just produced


def test_chart_has_one_bar_per_day_and_series_and_is_valid_svg():
    days = [date(2030, 1, 1) + timedelta(days=i) for i in range(30)]
    svg = usage_chart_svg(
        days=days,
        series=[
            Series("Requests", "#1565c0", list(range(30))),
            Series("Instances", "#2e7d32", [i * 64 for i in range(30)]),
            Series("Refusals <&>", "#c62828", [0] * 29 + [3]),
        ],
        title="Usage of <acme>",
    )
    root = _parse(svg)
    rects = root.findall("{http://www.w3.org/2000/svg}rect")
    assert len(rects) == 90
    assert "Refusals &lt;&amp;&gt;" in svg and "<acme>" not in svg
    assert "2030-01-30: 3 refusals &lt;&amp;&gt;</title>" in svg
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing fetched from anywhere


def test_zero_days_render_flat_and_small_values_stay_visible():
    days = [date(2030, 1, 1), date(2030, 1, 2)]
    svg = usage_chart_svg(days=days, series=[Series("Instances", "#000", [1, 1_000_000])])
    heights = [float(r.get("height")) for r in _parse(svg).iter("{http://www.w3.org/2000/svg}rect")]
    assert heights[0] >= 1.0 and heights[1] > heights[0]
    flat = usage_chart_svg(days=days, series=[Series("Requests", "#000", [0, 0])])
    assert all(float(r.get("height")) == 0 for r in _parse(flat).iter("{http://www.w3.org/2000/svg}rect"))


def test_quota_gauge():
    assert "unlimited" in quota_bar_svg(fraction=None)
    assert "50.0% used" in quota_bar_svg(fraction=0.5)
    assert "#c62828" in quota_bar_svg(fraction=0.99)
