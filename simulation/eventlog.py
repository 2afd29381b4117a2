"""A run's event log as Parquet, in the live system's own shapes, for the learning jobs.

Four files in one directory per run:

* ``outcomes.parquet``: the guard's outcomes as the live metric streams keep them (every
  error and a 10 % sample of successes): ``at, service, latency_s, ok, error_kind, tier,
  provider`` (``ok``: the request was answered, by the primary when ``error_kind`` is
  null, else by the fallback ``tier``);
* ``audit.parquet``: the audit trail's records: ``id, kind, at, service, data`` (data as JSON);
* ``detections.parquet``: ``at, service, signal, detail`` (simulated seconds from the start);
* ``steps.parquet``: every recovery step: ``at, run, workflow, service, step, action,
  status, duration_s, rollback, error``;
* ``trouble.parquet``: the ground truth, when each service was really in trouble (a fault
  that was not prevented acting on it or on one it depends on): ``service, start, end``, UTC
  epoch seconds. It is what training labels its buckets with;
* ``runs.parquet``: every recovery workflow run, as the live orchestrator summarises its
  own: ``run_id, workflow, service, trigger, started_at, ended_at, succeeded, ended`` (UTC
  epoch seconds; a run still going at the end has no ``ended_at``);
* ``run.json``: what the run was: ``scenario, file, seed, start`` (UTC epoch seconds of
  simulated second 0, to place ``detections`` and ``steps`` on the wall clock),
  ``duration_s, sample_rate, services``.

``at`` is UTC epoch seconds (the scenario's simulated wall clock) in the first two, as live.
``actors.frames`` reads all of it as pandas DataFrames, on the wall clock.
"""

from __future__ import annotations

import json
import pathlib
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from learning.history import buckets_from_events
from learning.training import Bucket

from .records import SAMPLE_RATE

if TYPE_CHECKING:
    from .records import RunResult

__all__ = ["read_training_history", "write_event_log"]


def write_event_log(result: RunResult, directory: str | pathlib.Path) -> pathlib.Path:
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rows = result.outcomes
    pq.write_table(pa.table({
        "at": pa.array([r[0] for r in rows], pa.float64()),
        "service": pa.array([r[1] for r in rows], pa.string()),
        "latency_s": pa.array([r[2] for r in rows], pa.float64()),
        "ok": pa.array([r[3] for r in rows], pa.bool_()),
        "error_kind": pa.array([r[4] for r in rows], pa.string()),
        "tier": pa.array([r[5] for r in rows], pa.string()),
        "provider": pa.array([r[6] for r in rows], pa.string()),
    }), out / "outcomes.parquet")
    audit = result.audit
    pq.write_table(pa.table({
        "id": pa.array([a.id for a in audit], pa.string()),
        "kind": pa.array([a.kind.value for a in audit], pa.string()),
        "at": pa.array([a.at for a in audit], pa.float64()),
        "service": pa.array([a.service for a in audit], pa.string()),
        "data": pa.array([json.dumps(a.data, default=str) for a in audit], pa.string()),
    }), out / "audit.parquet")
    det = result.detections
    pq.write_table(pa.table({
        "at": pa.array([d.at for d in det], pa.float64()),
        "service": pa.array([d.service for d in det], pa.string()),
        "signal": pa.array([d.signal for d in det], pa.string()),
        "detail": pa.array([d.detail for d in det], pa.string()),
    }), out / "detections.parquet")
    steps = result.steps
    pq.write_table(pa.table({
        k: pa.array([s[k] for s in steps], t) for k, t in (
            ("at", pa.float64()), ("run", pa.string()), ("workflow", pa.string()),
            ("service", pa.string()), ("step", pa.int64()), ("action", pa.string()),
            ("status", pa.string()), ("duration_s", pa.float64()), ("rollback", pa.bool_()),
            ("error", pa.string()))
    }), out / "steps.parquet")
    sc = result.scenario
    wall = sc.start.timestamp()
    # trouble from the first failed call (a leak's memory climb comes before it)
    spans = [(name, wall + f.impact_start, wall + f.actual_end) for f in result.incidents
             if not f.averted and f.impact_start < f.actual_end
             for name in sorted({f.spec.service} | sc.dependents(f.spec.service))]
    pq.write_table(pa.table({
        "service": pa.array([s[0] for s in spans], pa.string()),
        "start": pa.array([s[1] for s in spans], pa.float64()),
        "end": pa.array([s[2] for s in spans], pa.float64()),
    }), out / "trouble.parquet")
    runs = result.runs
    pq.write_table(pa.table({
        "run_id": pa.array([r["run_id"] for r in runs], pa.string()),
        "workflow": pa.array([r["workflow"] for r in runs], pa.string()),
        "service": pa.array([r["service"] for r in runs], pa.string()),
        "trigger": pa.array([r["trigger"] for r in runs], pa.string()),
        "started_at": pa.array([wall + r["started_s"] for r in runs], pa.float64()),
        "ended_at": pa.array([wall + r["ended_s"] if "ended_s" in r else None for r in runs],
                             pa.float64()),
        "succeeded": pa.array([r.get("succeeded") for r in runs], pa.bool_()),
        "ended": pa.array([r.get("ended") for r in runs], pa.string()),
    }), out / "runs.parquet")
    (out / "run.json").write_text(json.dumps({
        "scenario": sc.name, "file": sc.source, "seed": result.seed, "start": wall,
        "duration_s": sc.duration_s, "sample_rate": SAMPLE_RATE,
        "services": sorted(sc.services)}, indent=1) + "\n")
    return out


def read_training_history(directory: str | pathlib.Path, sample_rate: float = SAMPLE_RATE,
                          bucket_s: float = 10.0) -> dict[str, list[Bucket]]:
    """An exported event log as labelled buckets (see :mod:`learning.history`)."""
    d = pathlib.Path(directory)
    out = pq.read_table(d / "outcomes.parquet", columns=["at", "service", "ok", "error_kind"])
    tr = pq.read_table(d / "trouble.parquet").to_pylist()
    trouble: dict[str, list[tuple[float, float]]] = {}
    for row in tr:
        trouble.setdefault(row["service"], []).append((row["start"], row["end"]))
    cols = [out.column(c).to_pylist() for c in ("at", "service", "ok", "error_kind")]
    return buckets_from_events(zip(*cols, strict=True), trouble, sample_rate, bucket_s)
