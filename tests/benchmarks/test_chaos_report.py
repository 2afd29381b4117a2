"""The chaos report as the README and docs/chaos.md show it: generated from
benchmarks/chaos.json, never retyped; and a failed or skipped experiment reads as one."""

from __future__ import annotations

import copy
import json

from benchmarks.chaos import MARKERS, REPORT, blocks
from benchmarks.harness import between
from serve.chaos.report import markdown, summary, table


def test_the_readme_and_the_chaos_page_say_what_the_last_report_says():
    report = json.loads(REPORT.read_text())
    for doc, body in blocks(report).items():
        assert between(doc.read_text(), *MARKERS) == f"{MARKERS[0]}\n{body}\n{MARKERS[1]}", doc


def test_a_failed_and_a_skipped_experiment_show_in_the_table_and_the_totals():
    report = json.loads(REPORT.read_text())
    bad = copy.deepcopy(report)
    first = next(e for e in bad["experiments"] if e.get("passed"))  # whatever the last run
    first.update(passed=False, lost=3, safety_violations=1)
    bad["experiments"].append({"name": "late", "faults": ["x"], "skipped": "not steady"})
    bad["summary"] = summary(bad["experiments"])
    assert bad["summary"]["lost"] == report["summary"]["lost"] + 3
    assert bad["summary"]["passed"] == report["summary"]["passed"] - 1
    assert bad["summary"]["experiments"] == report["summary"]["experiments"] + 1
    text = table(bad)
    assert "FAIL" in text and "skipped: not steady" in text
    assert "| late | skipped: not steady |" in markdown(bad)
