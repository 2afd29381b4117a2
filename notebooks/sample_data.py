"""Data for the notebooks, made here: the scenario library simulated once, its event logs
kept, its runs logged to MLflow. Each notebook calls :func:`ensure`; the first makes the data
(about a minute and a half on two cores), the others find it.

This is what `selfheal simulate simulation/scenarios/*.yaml --events DIR/events` does, with
MLflow in DIR; point the notebooks at your own data instead with ``SELFHEAL_NOTEBOOK_DATA``
(a folder of event logs, or a data directory), or at a running service (see each notebook).
"""

from __future__ import annotations

import json
import os
import pathlib

from simulation.runner import FanOut, simulate
from simulation.scenario import SCENARIOS, load_scenario

__all__ = ["data_dir", "ensure", "figures_dir"]


def data_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("SELFHEAL_NOTEBOOK_DATA", "data")).resolve()


def figures_dir() -> pathlib.Path:
    """Where figures are saved (make notebooks: docs/notebooks, the README's pictures)."""
    out = pathlib.Path(os.environ.get("SELFHEAL_NOTEBOOK_FIGURES", "figures")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return out


def ensure(directory: pathlib.Path | None = None, fan_out: FanOut | None = None) -> pathlib.Path:
    """``directory`` (default :func:`data_dir`) with the library's event logs in ``events/``
    and its runs in ``mlflow.db``; made now unless already there (``fan_out``: where the
    scenarios run, as :func:`~simulation.runner.simulate` takes it). ``ready.json`` keeps
    the runs' reports beside the scenarios' names."""
    root = directory or data_dir()
    marker = root / "ready.json"
    if marker.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    files = sorted(SCENARIOS.glob("*.yaml"))
    reports = simulate([load_scenario(f) for f in files], runs=1, fan_out=fan_out,
                       events_dir=str(root / "events"),
                       mlflow_uri=f"sqlite:///{root / 'mlflow.db'}")
    marker.write_text(json.dumps({"scenarios": [r["scenario"] for r in reports],
                                  "reports": reports}, indent=1))
    return root
