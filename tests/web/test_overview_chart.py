"""The overview's MRR chart keeps every month label inside the picture."""

from __future__ import annotations

import re

from connector.web.overview import CHART_W, trend_svg

#: A generous estimate of a 10px sans-serif character's width, in the SVG's units.
CHAR_W = 0.65 * 10


def _label_extents(svg: str) -> list[tuple[float, float]]:
    extents = []
    for x, anchor, text in re.findall(
        r'<text x="([\d.]+)"[^>]*text-anchor="(\w+)"[^>]*>([^<]*)</text>', svg
    ):
        width = len(text) * CHAR_W
        left = {"start": 0.0, "middle": width / 2, "end": width}[anchor]
        extents.append((float(x) - left, float(x) - left + width))
    return extents


def test_every_month_label_fits_inside_the_chart() -> None:
    trend = [(f"2026-{month:02d}", {"usd": 1000 * month}) for month in range(1, 13)]

    extents = _label_extents(str(trend_svg(trend)))

    assert len(extents) == 12
    assert all(left >= 0 and right <= CHART_W for left, right in extents), extents
