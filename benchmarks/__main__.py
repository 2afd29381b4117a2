"""``make bench``: run every suite, print the table, write benchmarks/results.json."""

from __future__ import annotations

import platform
import sys

from . import core, nab, runtime, simulation
from .harness import RESULTS, table, write


def main() -> int:
    print(f"selfheal benchmarks on {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.machine()}\n")
    figures = core.run() + runtime.run() + simulation.run() + nab.run()
    print(table(figures))
    write(figures)
    print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
