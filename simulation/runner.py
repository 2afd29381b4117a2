"""Many runs: scenarios x seeds, each with self-healing and as a baseline, fanned out on Ray.

:func:`simulate` returns one report per scenario (the JSON the ``selfheal simulate`` command
writes). The same scenarios and seeds give the same reports, byte for byte: every random
draw comes from a stream seeded by the run's seed, nothing reads the wall clock, and the
reports are assembled in submission order whatever order the Ray tasks finish in.

Each run can also write its event log as Parquet (``events_dir``) and be logged to MLflow
(``mlflow_uri``): parameters (scenario, seed, policy, size), metrics (the outcomes, with
``baseline_`` ones beside them), artifacts (the run's report and its event log).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

from .engine import Simulation
from .eventlog import write_event_log
from .metrics import aggregate, mean, run_metrics
from .scenario import Scenario

__all__ = ["RunSpec", "report_json", "run_one", "simulate"]

RunSpec = tuple[Scenario, int]


def run_one(scenario: Scenario, seed: int, events_dir: str | None = None) -> dict[str, Any]:
    """One seed of one scenario: with self-healing, and the baseline without it."""
    healing = Simulation(scenario, seed, healing=True, event_log=events_dir is not None).run()
    baseline = Simulation(scenario, seed, healing=False).run()
    out: dict[str, Any] = {"seed": seed, "healing": run_metrics(healing),
                           "baseline": run_metrics(baseline), "events": None}
    if events_dir is not None:
        path = pathlib.Path(events_dir) / f"{_slug(scenario.name)}-seed{seed}"
        out["events"] = str(write_event_log(healing, path))
    return out


def simulate(scenarios: Sequence[Scenario], *, runs: int = 1, seed: int | None = None,
             use_ray: bool | None = None, events_dir: str | None = None,
             mlflow_uri: str | None = None) -> list[dict[str, Any]]:
    """Reports for ``scenarios``, each over ``runs`` seeds (from ``seed``, or each
    scenario's own)."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    specs = [(sc, (sc.seed if seed is None else seed) + i) for sc in scenarios
             for i in range(runs)]
    use_ray = len(specs) > 1 if use_ray is None else use_ray
    results = _fan_out(specs, events_dir) if use_ray else [run_one(sc, s, events_dir)
                                                          for sc, s in specs]
    reports = []
    for k, sc in enumerate(scenarios):
        mine = results[k * runs:(k + 1) * runs]
        reports.append(_report(sc, mine))
    if mlflow_uri is not None:
        from .tracking import log_runs  # noqa: PLC0415 - MLflow costs 2.5 s to import

        log_runs(mlflow_uri, specs, results)
    return reports


def _fan_out(specs: list[RunSpec], events_dir: str | None) -> list[dict[str, Any]]:
    import ray  # noqa: PLC0415 - only when runs fan out

    remote = ray.remote(num_cpus=1)(run_one)
    refs = [remote.remote(sc, s, events_dir) for sc, s in specs]
    return list(ray.get(refs))


def _report(sc: Scenario, results: list[dict[str, Any]]) -> dict[str, Any]:
    healing, spread = aggregate([r["healing"] for r in results])
    baseline, baseline_spread = aggregate([r["baseline"] for r in results])
    first = results[0]
    report: dict[str, Any] = {
        "scenario": sc.name, "file": sc.source, "seed": first["seed"], "runs": len(results),
        "simulated_seconds": sc.duration_s, **healing,
        "incidents": [{"run": i, **inc} for i, r in enumerate(results)
                      for inc in r["healing"]["incidents"]],
        "services": _services(results, "healing"),
        "patient_impact": _impact(results, "healing"),
        "workflow_runs": sum(r["healing"]["workflow_runs"] for r in results),
        "prevented_faults": sum(r["healing"]["prevented_faults"] for r in results) / len(results),
    }
    if len(results) > 1:
        report["spread"] = spread
    report["baseline"] = {
        **baseline,
        "incidents": [{"run": i, **inc} for i, r in enumerate(results)
                      for inc in r["baseline"]["incidents"]],
        "services": _services(results, "baseline"),
        "patient_impact": _impact(results, "baseline"),
    }
    if len(results) > 1:
        report["baseline"]["spread"] = baseline_spread
    if any(r["events"] for r in results):
        report["event_logs"] = [r["events"] for r in results]
    return _rounded(report)


def _services(results: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    out = {}
    for name in results[0][mode]["services"]:
        per = [r[mode]["services"][name] for r in results]
        out[name] = {k: mean([p[k] for p in per if p[k] is not None])
                     for k in ("requests", "availability", "mttd_s", "mttr_s")}
        out[name]["impact"] = {k: sum(p["impact"][k] for p in per) for k in per[0]["impact"]}
    return out


def _impact(results: list[dict[str, Any]], mode: str) -> dict[str, int]:
    keys = results[0][mode]["patient_impact"]
    return {k: sum(r[mode]["patient_impact"][k] for r in results) for k in keys}


def _rounded(value: Any) -> Any:
    """Floats to 6 significant places, so reports compare byte for byte across machines."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def report_json(reports: list[dict[str, Any]]) -> str:
    """The reports as the JSON file: a list, one object per scenario."""
    return json.dumps(reports, indent=2) + "\n"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
