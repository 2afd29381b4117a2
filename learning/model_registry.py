"""Monitor models in MLflow: training runs, the model registry, and the ``champion`` alias.

A training is one MLflow run in the experiment ``selfheal-training`` (parameters: services,
grid, targets, history size; metrics: each service's precision, recall, false-positive and
false-negative rates and detection delay; artifacts: the model as JSON, each service's
grid as a table and as an SVG plot, the recurring-failure pattern table and the replay that
judged it), with the model registered as a new version of ``selfheal-monitor-policy``.
Promotion moves the ``champion`` alias to a version and records the replay comparison on it;
running monitors read the champion (:func:`champion`) and its patterns
(:func:`champion_patterns`).

The model is logged from code (``monitor_model_code.py``) with explicit requirements and a
signature, as MLflow recommends: loading it runs that file, never unpickled code.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from .plots import line_chart
from .training import GRID, MonitorModel

__all__ = ["EXPERIMENT", "MODEL_NAME", "RegistryError", "champion", "champion_patterns",
           "log_training", "previous_champion", "register", "set_champion", "use_experiment",
           "versions"]


class RegistryError(ValueError):
    """A model version that does not exist, or nothing to roll back to."""

EXPERIMENT = "selfheal-training"
MODEL_NAME = "selfheal-monitor-policy"
ALIAS = "champion"
MODEL_CODE = Path(__file__).with_name("monitor_model_code.py")
# what MLflow says at INFO on every first use of a store or registration is not ours to print
for _name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking._model_registry.client"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def use_experiment(uri: str, name: str) -> None:
    """Point MLflow at ``uri`` and ``name``; a new experiment on a SQLite store keeps its
    artifacts beside the database (MLflow's default, ``./mlruns``, is wherever the command
    happened to run)."""
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(name) is None:
        location = None
        if uri.startswith("sqlite:///"):
            location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
        mlflow.create_experiment(name, artifact_location=location)
    mlflow.set_experiment(name)


def log_training(uri: str, model: MonitorModel, tables: dict[str, list[dict[str, float]]],
                 history_buckets: int, grid: Sequence[float] = GRID,
                 patterns: list[dict[str, Any]] | None = None,
                 replay: dict[str, Any] | None = None,
                 combinations: list[dict[str, Any]] | None = None,
                 thresholds: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    """Log one training and its model (not yet registered: :func:`register`); returns
    (run id, model URI)."""
    use_experiment(uri, EXPERIMENT)
    with mlflow.start_run(run_name="monitor training") as run, \
            tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"services": ",".join(sorted(model.policies)),
                           "grid_h": ",".join(f"{h:g}" for h in grid),
                           "history_buckets": history_buckets})
        for service, m in model.metrics.items():
            mlflow.log_metrics({f"{service}.{k}": float(v) for k, v in m.items()})
            mlflow.log_param(f"{service}.h", model.policies[service].h)
        path = Path(tmp) / "monitor_model.json"
        path.write_text(model.to_json())
        mlflow.log_artifact(str(path))
        mlflow.log_dict(tables, "grid.json")
        mlflow.log_dict({"patterns": patterns or [], "combinations": combinations or []},
                        "patterns.json")
        if replay is not None:  # what the promotion was judged on, beside the model
            mlflow.log_dict(replay, "replay.json")
        if thresholds is not None:  # each service's error threshold and its trade-off
            mlflow.log_dict({"thresholds": thresholds}, "thresholds.json")
        for service, rows in tables.items():  # what each h costs and buys, per service
            mlflow.log_text(line_chart(
                f"{service}: the monitor's evidence level h", "h", [r["h"] for r in rows],
                {"detection delay (s)": [r["detection_delay_s"] for r in rows],
                 "false-positive rate": [r["false_positive_rate"] for r in rows],
                 "false-negative rate": [r["false_negative_rate"] for r in rows]}),
                f"plots/{service}_grid.svg")
        info = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_CODE),
                                       artifacts={"policy": str(path)},
                                       pip_requirements=[f"mlflow=={mlflow.__version__}"])
        return run.info.run_id, str(info.model_uri)


def register(uri: str, model_uri: str) -> str:
    """Register a logged model as a new version of the monitor model; returns the version."""
    mlflow.set_tracking_uri(uri)
    # MLflow prints "Successfully registered model..." to stderr itself; the caller reports
    with contextlib.redirect_stderr(io.StringIO()):
        return str(mlflow.register_model(model_uri, MODEL_NAME).version)


def set_champion(uri: str, version: str, reasons: list[str]) -> None:
    client = MlflowClient(uri)
    client.set_registered_model_alias(MODEL_NAME, ALIAS, version)
    client.set_model_version_tag(MODEL_NAME, version, "promotion", "; ".join(reasons)[:4000])


def versions(uri: str) -> dict[str, Any]:
    """Every registered version of the monitor model (newest first) and the champion."""
    client = MlflowClient(uri)
    try:
        found = client.search_model_versions(f"name = '{MODEL_NAME}'")
    except mlflow.exceptions.MlflowException:
        found = []
    try:
        current = str(client.get_model_version_by_alias(MODEL_NAME, ALIAS).version)
    except mlflow.exceptions.MlflowException:
        current = None
    rows = [{"version": str(mv.version), "run_id": mv.run_id,
             "created_at": mv.creation_timestamp / 1000.0,
             "promotion": (mv.tags or {}).get("promotion")} for mv in found]
    rows.sort(key=lambda r: int(r["version"]), reverse=True)
    return {"model": MODEL_NAME, "champion": current, "versions": rows}


def previous_champion(uri: str) -> str:
    """The latest version before the current champion that was once promoted.

    Raises:
        RegistryError: no champion, or none before it.
    """
    info = versions(uri)
    current = info["champion"]
    if current is None:
        raise RegistryError("no champion to roll back from")
    earlier = [r["version"] for r in info["versions"]
               if int(r["version"]) < int(current) and r["promotion"]]
    if not earlier:
        raise RegistryError(f"no version before {current} was ever promoted")
    return earlier[0]


def _champion_artifact(uri: str, path: str) -> tuple[str, str] | None:
    """The champion's version and the text of one artifact of its training run."""
    client = MlflowClient(uri)
    try:
        mv = client.get_model_version_by_alias(MODEL_NAME, ALIAS)
    except mlflow.exceptions.MlflowException:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=path,
                                                    dst_path=tmp, tracking_uri=uri)
        return str(mv.version), Path(local).read_text()


def champion(uri: str) -> tuple[str, MonitorModel] | None:
    """The champion's version and model, or None if nothing was promoted yet."""
    found = _champion_artifact(uri, "monitor_model.json")
    return None if found is None else (found[0], MonitorModel.from_json(found[1]))


def champion_patterns(uri: str) -> tuple[str, list[dict[str, Any]]] | None:
    """The champion's version and the recurring-failure patterns its training found (the
    rows of ``patterns.json``), or None if nothing was promoted yet."""
    found = _champion_artifact(uri, "patterns.json")
    return None if found is None else (found[0], json.loads(found[1])["patterns"])
