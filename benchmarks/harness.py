"""Measuring and reporting: every figure is stored beside its anchor and their ratio."""

from __future__ import annotations

import json
import pathlib
import statistics
import timeit
from collections.abc import Callable
from dataclasses import asdict, dataclass

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


def write(figures: list[Figure], path: pathlib.Path = RESULTS) -> None:
    """Replace this suite's figures in ``path``, keeping figures other suites wrote."""
    names = {f.name for f in figures}
    old = json.loads(path.read_text()) if path.exists() else []
    kept = [r for r in old if r.get("name") not in names]
    path.write_text(json.dumps(kept + [asdict(f) for f in figures], indent=2) + "\n")


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "anchor", "anchor value", "ratio")]
    for f in figures:
        rows.append((f.name, f"{f.value:,.3f} {f.unit}", f.anchor,
                     f"{f.anchor_value:,.3f} {f.unit}", f"{f.ratio:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
