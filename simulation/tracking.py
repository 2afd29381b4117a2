"""Simulation runs into MLflow: one MLflow run per (scenario, seed), in one experiment.

Parameters: the scenario, its file, the seed, the policy and the catalogue it came from,
and the run's size. Metrics: the
outcomes with self-healing, and the baseline's beside them (``baseline_`` prefix); a metric
that is undefined for a run (no incident, so no MTTR) is left out rather than faked.
Artifacts: the run's own report (``report.json``) and its event log, when one was written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .metrics import METRICS
from .scenario import Scenario

__all__ = ["EXPERIMENT", "log_runs"]

EXPERIMENT = "selfheal-simulation"


def log_runs(uri: str, specs: Sequence[tuple[Scenario, int]],
             results: Sequence[dict[str, Any]], catalogue: str = "shipped") -> list[str]:
    """Log each run; returns the MLflow run ids in order. ``catalogue`` names the policy's
    catalogue (its directory): two policies are told apart by it."""
    import mlflow  # noqa: PLC0415

    from learning.model_registry import use_experiment  # noqa: PLC0415

    logging.getLogger("alembic").setLevel(logging.WARNING)  # the store's migrations are noisy
    use_experiment(uri, EXPERIMENT)
    ids = []
    for (sc, seed), result in zip(specs, results, strict=True):
        with mlflow.start_run(run_name=f"{sc.name} seed {seed}") as run:
            mlflow.log_params({
                "scenario": sc.name, "file": sc.source, "seed": seed, "policy": sc.policy,
                "catalogue": catalogue,
                "simulated_seconds": sc.duration_s, "services": len(sc.services),
                "faults": len(sc.faults)})
            metrics = {}
            for mode, prefix in (("healing", ""), ("baseline", "baseline_")):
                for k in METRICS:
                    v = result[mode][k]
                    if v is not None:
                        metrics[prefix + k] = float(v)
            mlflow.log_metrics(metrics)
            mlflow.log_dict(result, "report.json")
            if result.get("events"):
                mlflow.log_artifacts(result["events"], "event_log")
            ids.append(run.info.run_id)
    return ids
