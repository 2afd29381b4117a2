"""Run the notebooks top to bottom, as `make test` does, and keep them rendered.

The notebooks are kept as text (``*.py``, jupytext's percent format: reviewable, diffable);
``python notebooks/render.py`` executes each in a fresh kernel (nbclient) with this folder
as its working directory and writes ``NAME.ipynb`` beside it, outputs and pictures included,
for reading on GitHub; figures go to ``docs/notebooks/`` (the README's pictures). A cell
that raises stops it with the cell and the error.
"""

from __future__ import annotations

import os
import pathlib
import sys

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = pathlib.Path(__file__).resolve().parent
NOTEBOOKS = ("failure_analysis", "threshold_tuning", "policy_comparison")
TIMEOUT_S = 900  # a cell; the data is made once, by the first notebook's first cell


def execute(name: str) -> nbformat.NotebookNode:
    """Run ``NAME.py`` in a fresh kernel; the environment (``SELFHEAL_NOTEBOOK_DATA``,
    ``SELFHEAL_NOTEBOOK_FIGURES``) is this process's. Raises
    ``nbclient.exceptions.CellExecutionError`` naming the cell that failed."""
    nb = jupytext.read(HERE / f"{name}.py")
    NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


def main() -> int:
    os.environ.setdefault("SELFHEAL_NOTEBOOK_FIGURES", str(HERE.parent / "docs" / "notebooks"))
    for name in sys.argv[1:] or NOTEBOOKS:
        print(f"running {name} ...", flush=True)
        nb = execute(name)
        nb.metadata.pop("jupytext", None)  # the pairing lives in the .py's header
        nbformat.write(nb, HERE / f"{name}.ipynb")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
