"""The SVG line chart: well-formed, every series drawn, labels escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from learning.plots import line_chart


def test_a_chart_is_well_formed_svg_with_a_line_per_series():
    svg = line_chart("api <server>", "h", [4, 8, 12], {"delay": [30, 50, 60],
                                                      "fpr": [0.01, 0.0, 0.0]})
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    lines = root.findall(f"{ns}polyline")
    assert len(lines) == 2
    assert len(lines[0].get("points").split()) == 3
    assert "api <server>" in "".join(t.text or "" for t in root.iter(f"{ns}text"))
