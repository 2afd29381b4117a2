"""Measuring and reporting: every figure is stored beside its anchor and their ratio."""

from __future__ import annotations

import json
import math
import pathlib
import statistics
import timeit
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

RESULTS = pathlib.Path(__file__).with_name("results.json")


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    anchor: str
    anchor_value: float
    ratio: float


def figure(name: str, value: float, unit: str, anchor: str, anchor_value: float) -> Figure:
    ratio = value / anchor_value if anchor_value else float("nan")
    return Figure(name, round(value, 4), unit, anchor, round(anchor_value, 4), round(ratio, 4))


def per_call_ns(fns: dict[str, Callable[[], object]], number: int = 100_000,
                rounds: int = 9) -> dict[str, float]:
    """Median time of one call of each function, in nanoseconds, measured interleaved.

    Each round times every function once, in turn, so a change in machine speed during the
    run (frequency scaling, a neighbour's load: 20-30 % here) hits a figure and its anchor
    alike instead of skewing their ratio.
    """
    for fn in fns.values():
        fn()  # warm up caches and lazy paths
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            runs[name].append(timeit.timeit(fn, number=number) / number * 1e9)
    return {name: statistics.median(r) for name, r in runs.items()}


def write(by_suite: dict[str, list[Figure]], path: pathlib.Path = RESULTS) -> None:
    """Replace the figures of the suites that ran in ``path`` (a renamed figure does not
    linger), keeping those other suites wrote."""
    old = json.loads(path.read_text()) if path.exists() else []
    names = {f.name for figures in by_suite.values() for f in figures}
    kept = [r for r in old if r.get("suite") not in by_suite and r.get("name") not in names]
    new = [{**asdict(f), "suite": suite} for suite, figures in by_suite.items() for f in figures]
    path.write_text(json.dumps(kept + new, indent=2) + "\n")


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "anchor", "anchor value", "ratio")]
    for f in figures:
        rows.append((f.name, f"{f.value:,.3f} {f.unit}", f.anchor,
                     f"{f.anchor_value:,.3f} {f.unit}", f"{f.ratio:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def between(text: str, start: str, end: str) -> str:
    """The block from the ``start`` marker to the ``end`` marker, both included: a generated
    part of a document (the README's Measured table, docs/learning.md's detector tables)."""
    lo, hi = text.index(start), text.index(end) + len(end)
    return text[lo:hi]


def regenerate(doc: pathlib.Path, start: str, end: str, body: str) -> None:
    """Replace ``doc``'s block between the markers with ``body`` between them."""
    text = doc.read_text()
    doc.write_text(text.replace(between(text, start, end), f"{start}\n{body}\n{end}"))


@dataclass(frozen=True)
class GeneratedBlock:
    """A generated part of a document, between two markers: ``render`` makes its body from
    results.json's figures. The README's Measured table and docs/learning.md's tables are
    such blocks; ``make bench`` rewrites them and tests check they match."""

    doc: pathlib.Path
    start: str
    end: str
    render: Callable[[list[dict[str, Any]]], str]

    def block(self, results: list[dict[str, Any]]) -> str:
        return f"{self.start}\n{self.render(results)}\n{self.end}"

    def current(self, text: str) -> str:
        """The block as ``text`` holds it now."""
        return between(text, self.start, self.end)

    def update(self, doc: pathlib.Path | None = None, results: pathlib.Path = RESULTS) -> None:
        regenerate(doc or self.doc, self.start, self.end,
                   self.render(json.loads(results.read_text())))


def suite_table(results: list[dict[str, Any]], suite: str, *, ratio: bool = False) -> str:
    """A suite's figures as a Markdown table, each beside its anchor (and their ratio)."""
    rows = [r for r in results if r.get("suite") == suite]
    if not rows:
        return "*Not measured yet (`make bench`).*"
    head = "| figure | value | anchor, measured in the same run |"
    lines = [head + (" ratio |" if ratio else ""), "|---|---|---|" + ("---|" if ratio else "")]
    for r in rows:
        unit = r["unit"]
        line = (f"| {r['name']} | {number(r['value'])} {unit} | {r['anchor']}: "
                f"{number(r['anchor_value'])} {unit} |")
        lines.append(line + (f" {number(r['ratio'])} |" if ratio else ""))
    return "\n".join(lines)


def number(v: float) -> str:
    """A figure as the generated tables show it: three significant places or so."""
    if math.isnan(v):
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"
