"""The README's Measured table says what benchmarks/results.json says: it is generated."""

from __future__ import annotations

import json

from benchmarks import detection_table, live_loop_table, resilience
from benchmarks.harness import RESULTS
from benchmarks.readme import README, ROWS, block, current, render, update


def test_the_readme_table_is_the_generated_one():
    assert current(README.read_text()) == block(json.loads(RESULTS.read_text()))


def test_every_row_names_a_figure_and_a_missing_one_says_so(tmp_path):
    results = json.loads(RESULTS.read_text())
    table = render(results)
    assert len(table.splitlines()) == len(ROWS) + 2
    assert "not measured yet" in render([r for r in results if r["name"] != ROWS[0][1]])
    readme = tmp_path / "README.md"
    readme.write_text("before\n" + block([]) + "\nafter\n")
    update(readme, RESULTS)
    assert readme.read_text() == "before\n" + block(results) + "\nafter\n"


def test_the_detector_tables_in_the_docs_are_the_generated_ones(tmp_path):
    results = json.loads(RESULTS.read_text())
    assert detection_table.current(detection_table.DOC.read_text()) == \
        detection_table.block(results)
    assert "not measured yet" in detection_table.render(
        [r for r in results if not r["name"].startswith("service corpus")])
    doc = tmp_path / "learning.md"
    doc.write_text("a\n" + detection_table.block([]) + "\nb\n")
    detection_table.update(doc, RESULTS)
    assert doc.read_text() == "a\n" + detection_table.block(results) + "\nb\n"


def test_the_live_loop_table_in_the_docs_is_the_generated_one(tmp_path):
    results = json.loads(RESULTS.read_text())
    assert live_loop_table.current(live_loop_table.DOC.read_text()) == \
        live_loop_table.block(results)
    assert "Not measured yet" in live_loop_table.render(
        [r for r in results if r.get("suite") != live_loop_table.SUITE])
    doc = tmp_path / "learning.md"
    doc.write_text("a\n" + live_loop_table.block([]) + "\nb\n")
    live_loop_table.update(doc, RESULTS)
    assert doc.read_text() == "a\n" + live_loop_table.block(results) + "\nb\n"


def test_the_monitor_table_in_the_docs_is_the_generated_one():
    results = json.loads(RESULTS.read_text())
    assert live_loop_table.monitor_current(live_loop_table.DOC.read_text()) == \
        live_loop_table.monitor_block(results)
    body = live_loop_table.render_monitor(results)
    # the slow degradation's ramp has its own row: a scenario's MTTD is the mean of its
    # faults', and the latency spike after the ramp would hide how long the ramp took
    assert "its degradation alone" in body and "ramp varied" in body
    assert "NAB" not in body and "requests/s" not in body


def test_the_resilience_table_in_the_docs_is_the_generated_one(tmp_path):
    results = json.loads(RESULTS.read_text())
    assert resilience.current(resilience.DOC.read_text()) == resilience.block(results)
    names = {r["name"] for r in results if r.get("suite") == resilience.SUITE}
    assert any(n.startswith("traffic_surge_3x: goodput") for n in names)  # measured
    doc = tmp_path / "core.md"
    doc.write_text("a\n" + resilience.block([]) + "\nb\n")
    resilience.update(doc, RESULTS)
    assert doc.read_text() == "a\n" + resilience.block(results) + "\nb\n"
