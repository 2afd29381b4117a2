"""Small SVG plots for MLflow artifacts, with no plotting library: a line chart is a few
polylines, and a browser or MLflow's artifact viewer shows it as it is."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["line_chart"]

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def line_chart(title: str, x_label: str, xs: Sequence[float],
               series: dict[str, Sequence[float]], width: int = 480, height: int = 300) -> str:
    """An SVG line chart of each series (scaled to its own maximum) against ``xs``."""
    left, right, top, bottom = 50, 130, 30, 40
    w, h = width - left - right, height - top - bottom
    lo, hi = min(xs), max(xs)
    span = (hi - lo) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="18" font-size="13">{escape(title)}</text>',
             f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#333"/>',
             f'<text x="{left + w / 2}" y="{height - 8}" text-anchor="middle">'
             f'{escape(x_label)}</text>']
    for x in xs:
        px = left + (x - lo) / span * w
        parts.append(f'<text x="{px:.1f}" y="{top + h + 14}" text-anchor="middle">{x:g}</text>')
    for k, (name, ys) in enumerate(series.items()):
        top_y = max((abs(y) for y in ys), default=0.0) or 1.0
        points = " ".join(f"{left + (x - lo) / span * w:.1f},{top + h - max(y, 0) / top_y * h:.1f}"
                          for x, y in zip(xs, ys, strict=True))
        colour = _COLOURS[k % len(_COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{points}"/>')
        parts.append(f'<text x="{left + w + 8}" y="{top + 14 + 16 * k}" fill="{colour}">'
                     f'{escape(name)} (max {top_y:.3g})</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
