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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from healing.catalogue import Catalogue

from .engine import Simulation
from .eventlog import write_event_log
from .metrics import aggregate, mean, run_metrics
from .policy import default_policy
from .scenario import Scenario

__all__ = ["FanOut", "Progress", "RunSpec", "SimulationInterrupted", "estimate", "report_json",
           "run_one", "simulate"]

RunSpec = tuple[Scenario, int]


# What one run costs here, roughly, for the estimate shown before a large one starts: the
# full guard path runs ~90k simulated requests/s on one core (make bench), the baseline faster;
# each service keeps four per-second counters of 4 bytes.
_REQUESTS_PER_S = 60_000.0
_BYTES_PER_SERVICE_SECOND = 16


class SimulationInterrupted(Exception):
    """Ctrl-C during :func:`simulate`: ``reports`` hold the runs that had finished."""

    def __init__(self, reports: list[dict[str, Any]], finished: int, total: int) -> None:
        super().__init__(f"interrupted after {finished} of {total} runs")
        self.reports, self.finished, self.total = reports, finished, total


Progress = Callable[[float, float, int], None]  # (simulated s done, of total, requests)
# Runs ``fn(*args)`` for each args elsewhere, yielding (index, result) as each finishes.
FanOut = Callable[[Callable[..., Any], Sequence[tuple[Any, ...]]], Iterable[tuple[int, Any]]]


def estimate(scenarios: Sequence[Scenario], runs: int) -> dict[str, float]:
    """What simulating costs, before it starts: simulated requests, seconds and bytes."""
    requests = 2 * runs * sum(sc.duration_s * sum(s.rps for s in sc.services.values())
                              for sc in scenarios)
    biggest = max(sc.duration_s * len(sc.services) for sc in scenarios)
    return {"requests": requests, "seconds": requests / _REQUESTS_PER_S,
            "bytes": 2 * biggest * _BYTES_PER_SERVICE_SECOND}


def run_one(scenario: Scenario, seed: int, events_dir: str | None = None,
            progress: Callable[[float, int], None] | None = None,
            catalogue: Catalogue | None = None) -> dict[str, Any]:
    """One seed of one scenario: with self-healing, and the baseline without it, both under
    ``catalogue``'s policy (default: the shipped catalogue's).
    ``progress(simulated_s, requests)`` counts both, so it ends at twice the duration."""
    policy = default_policy(scenario, catalogue)
    baseline_progress = None
    if progress is not None:
        def baseline_progress(t: float, n: int) -> None:
            progress(scenario.duration_s + t, healing.requests + n)

    healing = Simulation(scenario, seed, healing=True, event_log=events_dir is not None,
                         policy=policy).run(progress)
    baseline = Simulation(scenario, seed, healing=False, policy=policy).run(baseline_progress)
    out: dict[str, Any] = {"seed": seed, "healing": run_metrics(healing),
                           "baseline": run_metrics(baseline), "events": None,
                           "requests": healing.requests + baseline.requests}
    if events_dir is not None:
        path = pathlib.Path(events_dir) / f"{_slug(scenario.name)}-seed{seed}"
        out["events"] = str(write_event_log(healing, path))
    return out


def simulate(scenarios: Sequence[Scenario], *, runs: int = 1, seed: int | None = None,
             fan_out: FanOut | None = None, events_dir: str | None = None,
             mlflow_uri: str | None = None, progress: Progress | None = None,
             catalogue: Catalogue | None = None) -> list[dict[str, Any]]:
    """Reports for ``scenarios``, each over ``runs`` seeds (from ``seed``, or each
    scenario's own), under ``catalogue``'s policy (default: the shipped catalogue's).
    ``fan_out`` runs them elsewhere, as they finish (``actors.ray_gateway.as_completed``: a
    Ray task each); None: one after another here.

    Raises:
        SimulationInterrupted: on Ctrl-C, with the reports of the runs that had finished
            (those are logged to MLflow too).
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    specs = [(sc, (sc.seed if seed is None else seed) + i) for sc in scenarios
             for i in range(runs)]
    total = sum(2 * sc.duration_s for sc, _ in specs)
    results: list[dict[str, Any] | None] = [None] * len(specs)
    interrupted = False
    try:
        if fan_out is not None and len(specs) > 1:
            _elsewhere(fan_out, specs, events_dir, results, progress, total, catalogue)
        else:
            _in_process(specs, events_dir, results, progress, total, catalogue)
    except KeyboardInterrupt:
        interrupted = True
    reports = []
    for k, sc in enumerate(scenarios):
        mine = [r for r in results[k * runs:(k + 1) * runs] if r is not None]
        if mine:
            reports.append(_report(sc, mine))
    if mlflow_uri is not None:
        from .tracking import log_runs  # noqa: PLC0415 - MLflow costs 2.5 s to import

        done = [(spec, r) for spec, r in zip(specs, results, strict=True) if r is not None]
        if done:
            log_runs(mlflow_uri, [d[0] for d in done], [d[1] for d in done],
                     "shipped" if catalogue is None else catalogue.source)
    if interrupted:
        raise SimulationInterrupted(reports, sum(r is not None for r in results), len(specs))
    return reports


def _in_process(specs: list[RunSpec], events_dir: str | None,
                results: list[dict[str, Any] | None], progress: Progress | None,
                total: float, catalogue: Catalogue | None) -> None:
    done_s, requests = 0.0, 0
    for i, (sc, s) in enumerate(specs):
        tick = None
        if progress is not None:
            def tick(t: float, n: int, base: float = done_s, base_n: int = requests) -> None:
                progress(base + t, total, base_n + n)

        results[i] = r = run_one(sc, s, events_dir, tick, catalogue)
        done_s, requests = done_s + 2 * sc.duration_s, requests + r["requests"]
        if progress is not None:
            progress(done_s, total, requests)


def _elsewhere(fan_out: FanOut, specs: list[RunSpec], events_dir: str | None,
               results: list[dict[str, Any] | None], progress: Progress | None,
               total: float, catalogue: Catalogue | None) -> None:
    """Every run at once through ``fan_out``; progress as each finishes. On Ctrl-C the
    fan-out is closed (it cancels the rest) and what finished stays in ``results``."""
    done_s, requests = 0.0, 0
    finished = fan_out(run_one, [(sc, s, events_dir, None, catalogue) for sc, s in specs])
    try:
        for i, r in finished:
            results[i] = r
            done_s, requests = done_s + 2 * specs[i][0].duration_s, requests + r["requests"]
            if progress is not None:
                progress(done_s, total, requests)
    finally:
        close = getattr(finished, "close", None)
        if close is not None:
            close()


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
