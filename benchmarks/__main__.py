"""``make bench``: run every suite, print the table, write benchmarks/results.json.

``python -m benchmarks nab simulation`` runs only the suites named; the figures other suites
wrote before stay in results.json.
"""

from __future__ import annotations

import platform
import sys

from . import (
    api,
    audit,
    core,
    data,
    detection_table,
    learning,
    live_loop_table,
    nab,
    readme,
    resilience,
    runtime,
    simulation,
)
from .harness import RESULTS, table, write

SUITES = {"core": core.run, "runtime": runtime.run, "audit": audit.run,
          "simulation": simulation.run, "nab": nab.run, "api": api.run,
          "learning": learning.run, "data": data.run, "resilience": resilience.run}


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(f"unknown suite(s) {', '.join(unknown)}: choose from {', '.join(SUITES)}",
              file=sys.stderr)
        return 2
    print(f"selfheal benchmarks on {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.machine()}\n")
    by_suite = {name: SUITES[name]() for name in (names or SUITES)}
    figures = [f for run in by_suite.values() for f in run]
    print(table(figures))
    write(by_suite)
    readme.update()  # the README and the docs quote results.json; they are never retyped
    detection_table.update()
    live_loop_table.update()
    live_loop_table.update_monitor()
    resilience.update()
    print(f"\nwritten to {RESULTS}; README's Measured table and docs/learning.md's detector "
          "and live-loop tables and docs/core.md's resilience table regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
