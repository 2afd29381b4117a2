"""benchmarks/results.json: a suite that runs replaces all it wrote before, and only that."""

from __future__ import annotations

import json

from benchmarks.harness import figure, write


def test_a_suite_replaces_its_own_figures_and_keeps_the_others(tmp_path):
    path = tmp_path / "results.json"
    write({"core": [figure("breaker call", 1.0, "µs", "bare call", 0.5)],
           "nab": [figure("NAB old name", 50.0, "points", "baseline", 40.0)]}, path)
    write({"nab": [figure("NAB new name", 55.0, "points", "baseline", 40.0)]}, path)
    rows = {r["name"]: r for r in json.loads(path.read_text())}
    assert set(rows) == {"breaker call", "NAB new name"}  # the renamed figure is gone
    assert rows["NAB new name"]["suite"] == "nab" and rows["NAB new name"]["ratio"] == 1.375
    assert rows["breaker call"]["suite"] == "core"
