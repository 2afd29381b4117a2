"""Monitor models in MLflow: training runs, the model registry, and the ``champion`` alias.

A training is one MLflow run in the experiment ``selfheal-training`` (parameters: services,
grid, targets, history size; metrics: each service's precision, recall, false-positive and
false-negative rates and detection delay; artifacts: the model as JSON, each service's
grid as a table and as an SVG plot, and the recurring-failure pattern table), with the model
registered as a new version of ``selfheal-monitor-policy``. Promotion moves the ``champion``
alias to a version and records the replay comparison on it; running monitors read the
champion (:func:`champion`).
"""

from __future__ import annotations

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

__all__ = ["EXPERIMENT", "MODEL_NAME", "RegistryError", "champion", "log_training",
           "previous_champion", "set_champion", "use_experiment", "versions"]


class RegistryError(ValueError):
    """A model version that does not exist, or nothing to roll back to."""

EXPERIMENT = "selfheal-training"
MODEL_NAME = "selfheal-monitor-policy"
ALIAS = "champion"
logging.getLogger("alembic").setLevel(logging.WARNING)


class MonitorPolicyModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """The registered form: predicts each named service's monitor policy."""

    def load_context(self, context: Any) -> None:
        self.model = MonitorModel.from_json(Path(context.artifacts["policy"]).read_text())

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        # (no type hints: MLflow would read them as an input schema)
        services = list(model_input) if model_input is not None else []
        return [json.loads(self.model.to_json())["policies"].get(s) for s in services]


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
                 patterns: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    """Log one training and register its model; returns (run id, model version)."""
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
        mlflow.log_dict({"patterns": patterns or []}, "patterns.json")
        for service, rows in tables.items():  # what each h costs and buys, per service
            mlflow.log_text(line_chart(
                f"{service}: the monitor's evidence level h", "h", [r["h"] for r in rows],
                {"detection delay (s)": [r["detection_delay_s"] for r in rows],
                 "false-positive rate": [r["false_positive_rate"] for r in rows],
                 "false-negative rate": [r["false_negative_rate"] for r in rows]}),
                f"plots/{service}_grid.svg")
        info = mlflow.pyfunc.log_model(name="model", python_model=MonitorPolicyModel(),
                                       artifacts={"policy": str(path)}, pip_requirements=[],
                                       registered_model_name=MODEL_NAME)
        return run.info.run_id, str(info.registered_model_version)


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


def champion(uri: str) -> tuple[str, MonitorModel] | None:
    """The champion's version and model, or None if nothing was promoted yet."""
    client = MlflowClient(uri)
    try:
        mv = client.get_model_version_by_alias(MODEL_NAME, ALIAS)
    except mlflow.exceptions.MlflowException:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=mv.run_id,
                                                    artifact_path="monitor_model.json",
                                                    dst_path=tmp, tracking_uri=uri)
        return str(mv.version), MonitorModel.from_json(Path(local).read_text())
