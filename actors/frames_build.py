"""How :mod:`actors.frames` shapes what it reads: the columns of every frame, and the frames
derived from others (per-minute metrics, labelled history, recurring patterns), built the
same way whichever store the rows came from.

Internally times are UTC epoch seconds (floats); :func:`frame` turns them into
``datetime64[ns, UTC]`` on the way out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from healing.audit import AuditKind
from healing.errors import ConfigError
from healing.outcome import NOT_CALLED
from learning.history import buckets_from_events
from learning.patterns import FailureEvent, PatternRecognizer, incidents
from learning.training import Bucket

from .live_history import INCIDENT_AROUND_S, workflow_of
from .stores.audit_sql import PROJECTIONS

__all__ = ["COLUMNS", "TimeLike", "as_epoch", "frame", "service_list", "to_segments"]

TimeLike = float | int | str | dt.datetime | pd.Timestamp | None

RAW_OUTCOMES = ["at", "service", "latency_s", "ok", "error_kind", "tier", "provider"]
OCCURRENCE_S = 60  # a burst of failures of one kind within a minute is one occurrence


def _audit_columns(kind: AuditKind) -> list[str]:
    return ["run"] + ["time" if c.name == "at" else c.name
                      for c in PROJECTIONS[kind][0].columns]


# Every frame's columns, in order (docs/data.md says what each holds).
COLUMNS: dict[str, list[str]] = {
    "outcomes": ["run", "time", "service", "provider", "tier", "answered", "error_kind",
                 "latency_s", "weight"],
    "metrics": ["run", "service", "time", "requests", "primary_calls", "errors",
                "error_rate", "fallbacks", "unanswered", "p50_latency_s", "p95_latency_s",
                "events"],
    **{k.value: _audit_columns(k) for k in PROJECTIONS},
    "workflow_runs": ["run", "run_id", "workflow", "service", "trigger", "detail", "started",
                      "finished", "duration_s", "succeeded", "ended"],
    "detections": ["run", "time", "service", "trigger", "detail", "admitted"],
    "trouble": ["run", "service", "start", "end"],
    "history": ["run", "service", "start", "calls", "errors", "troubled"],
    "patterns": ["service", "frequency", "description", "typical_cause", "occurrences",
                 "periods_observed", "last_occurrence", "next_expected",
                 "recommended_action", "priority", "estimated_impact"],
}
TIMES = {"time", "start", "end", "started", "finished", "last_occurrence", "next_expected",
         "created"}
# the other typed columns (docs/data.md); the rest are strings, or Python objects for JSON
# and for the booleans that may be missing (succeeded, integrity_passed)
FLOATS = {"latency_s", "weight", "requests", "primary_calls", "errors", "error_rate",
          "fallbacks", "unanswered", "p50_latency_s", "p95_latency_s", "calls", "duration_s",
          "failure_rate", "slow_call_rate"}
INTS = {"events", "step", "occurrences", "periods_observed"}
BOOLS = {"answered", "troubled", "integrity_performed", "clinician_notified"}
_EPOCH = pd.Timestamp(0, tz="UTC")


def as_epoch(value: TimeLike, name: str) -> float | None:
    """``value`` as UTC epoch seconds (a time without a zone is UTC)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(name, value, f"is not a time ({exc})") from None
    if ts is pd.NaT:
        raise ConfigError(name, value, "is not a time")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return (ts - _EPOCH) / pd.Timedelta(seconds=1)


def seconds(times: pd.Series) -> pd.Series:
    """A column of UTC times back to epoch seconds."""
    return (times - _EPOCH) / pd.Timedelta(seconds=1)


def service_list(services: str | Sequence[str] | None) -> list[str] | None:
    if services is None:
        return None
    names = [services] if isinstance(services, str) else list(services)
    for s in names:
        if not isinstance(s, str) or not s:
            raise ConfigError("services", s, "must be service names")
    return names


def within(at: float, start: float | None, end: float | None) -> bool:
    return (start is None or at >= start) and (end is None or at < end)


def frame(data: pd.DataFrame | list[dict[str, Any]] | None, name: str) -> pd.DataFrame:
    """``data`` with exactly the columns of ``name``, in order, times as UTC datetimes."""
    cols = COLUMNS[name]
    df = pd.DataFrame(data if data is not None else [], columns=cols) \
        if not isinstance(data, pd.DataFrame) else data.reindex(columns=cols)
    for c in cols:
        if c in TIMES and not isinstance(df[c].dtype, pd.DatetimeTZDtype):
            df[c] = pd.to_datetime(pd.to_numeric(df[c]), unit="s", utc=True)
        elif c in FLOATS:
            df[c] = pd.to_numeric(df[c]).astype("float64")
        elif c in INTS | BOOLS and not df[c].isna().any():  # (an empty frame too)
            df[c] = df[c].astype("int64" if c in INTS else bool)
    return df.reset_index(drop=True)


def concat(parts: Iterable[pd.DataFrame], name: str) -> pd.DataFrame:
    found = [p for p in parts if len(p)]
    return frame(pd.concat(found, ignore_index=True) if found else None, name)


# -- rows into frames ------------------------------------------------------------------

def outcome_frame(run: str, sample_rate: float, raw: pd.DataFrame) -> pd.DataFrame:
    answered = raw["ok"].astype(bool)
    primary_ok = answered & raw["error_kind"].isna()
    return pd.DataFrame({
        "run": run, "time": raw["at"], "service": raw["service"],
        "provider": raw["provider"], "tier": raw["tier"], "answered": answered,
        "error_kind": raw["error_kind"], "latency_s": raw["latency_s"],
        # a streamed success stands for 1 / sample_rate calls; every error is streamed
        "weight": np.where(primary_ok, 1.0 / sample_rate, 1.0)})


def audit_rows(run: str, rows: list[dict[str, Any]], kind: AuditKind) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[c.name for c in PROJECTIONS[kind][0].columns])
    df.insert(0, "run", run)
    return frame(df.rename(columns={"at": "time"}), kind.value)


def runs_rows(run: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = [{"run": run, "run_id": r["run_id"], "workflow": r["workflow"],
            "service": r["service"], "trigger": r.get("trigger"), "detail": r.get("detail"),
            "started": r["started_at"], "finished": _nan_none(r.get("ended_at")),
            "duration_s": (r["ended_at"] - r["started_at"])
            if _nan_none(r.get("ended_at")) is not None else None,
            "succeeded": r.get("succeeded"), "ended": r.get("ended")} for r in rows]
    return frame(out, "workflow_runs")


def detection_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return frame([{**r, "time": r["at"]} for r in rows], "detections")


def trouble_rows(run: str, spans: Mapping[str, list[tuple[float, float]]],
                 start: float | None, end: float | None,
                 services: list[str] | None) -> pd.DataFrame:
    """Spans that overlap the range, cut to it."""
    rows = [{"run": run, "service": s,
             "start": a if start is None else max(a, start),
             "end": b if end is None else min(b, end)}
            for s, found in spans.items() if services is None or s in services
            for a, b in found if (start is None or b > start) and (end is None or a < end)]
    return frame(sorted(rows, key=lambda r: (r["service"], r["start"])), "trouble")


def _nan_none(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


# -- derived frames --------------------------------------------------------------------

def metrics(outcomes: pd.DataFrame, freq: str) -> pd.DataFrame:
    if outcomes.empty:
        return frame(None, "metrics")
    kind = outcomes["error_kind"]
    not_called = kind.isin(NOT_CALLED)
    w = outcomes["weight"]
    d = pd.DataFrame({
        "run": outcomes["run"], "service": outcomes["service"],
        "time": outcomes["time"].dt.floor(freq), "weight": w,
        "primary_calls": w.where(~not_called, 0.0),
        "errors": (kind.notna() & ~not_called).astype(float),
        "fallbacks": (outcomes["answered"] & (outcomes["tier"] != "primary")).astype(float),
        "unanswered": (~outcomes["answered"]).astype(float),
        "latency_s": outcomes["latency_s"]})
    keys = ["run", "service", "time"]
    g = d.groupby(keys, sort=True)
    out = g.agg(requests=("weight", "sum"), primary_calls=("primary_calls", "sum"),
                errors=("errors", "sum"), fallbacks=("fallbacks", "sum"),
                unanswered=("unanswered", "sum"), events=("weight", "size"))
    out["error_rate"] = out["errors"] / out["primary_calls"].where(out["primary_calls"] > 0)
    # latency quantiles weighted as the calls were (a sampled success stands for several)
    d = d.sort_values([*keys, "latency_s"])
    cum = d.groupby(keys)["weight"].cumsum() / d.groupby(keys)["weight"].transform("sum")
    for q, col in ((0.5, "p50_latency_s"), (0.95, "p95_latency_s")):
        out[col] = d[cum >= q - 1e-12].groupby(keys)["latency_s"].first()
    return frame(out.reset_index(), "metrics")


def history(run: str, sample_rate: float, raw: pd.DataFrame, trouble: pd.DataFrame,
            bucket_s: float) -> pd.DataFrame:
    spans: dict[str, list[tuple[float, float]]] = {}
    mine = trouble[trouble["run"] == run]
    for s, a, b in zip(mine["service"], seconds(mine["start"]), seconds(mine["end"]),
                       strict=True):
        spans.setdefault(s, []).append((a, b))
    kinds = [None if pd.isna(k) else k for k in raw["error_kind"]]  # NaN is not None
    events = zip(raw["at"], raw["service"], raw["ok"].astype(bool), kinds, strict=True)
    found = buckets_from_events(events, spans, sample_rate, bucket_s)
    return frame([{"run": run, "service": s, "start": b.start, "calls": b.calls,
                   "errors": b.errors, "troubled": b.troubled}
                  for s, bs in sorted(found.items()) for b in bs], "history")


def to_segments(history: pd.DataFrame) -> dict[str, list[list[Bucket]]]:
    """A :meth:`~actors.frames.Frames.history` frame as ``learning``'s input: per service,
    one list of buckets per run (each run a separate stretch of time)."""
    out: dict[str, list[list[Bucket]]] = {}
    df = history.assign(at=seconds(history["start"]))
    for (service, _run), g in df.sort_values("at").groupby(["service", "run"], sort=True):
        out.setdefault(service, []).append(
            [Bucket(a, c, e, bool(t)) for a, c, e, t in
             zip(g["at"], g["calls"], g["errors"], g["troubled"], strict=True)])
    return out


def patterns(failures: pd.DataFrame, transitions: pd.DataFrame, steps: pd.DataFrame,
             now: float | None) -> pd.DataFrame:
    """Recurring failures by time, learnt as the control API and training learn them
    (:func:`actors.live_history.recorded_failures`, in SQL): from the incidents, circuits
    opening and recovery runs starting, each with its failures' cause."""
    events: list[FailureEvent] = []
    if len(failures):
        f = failures.assign(at=seconds(failures["time"]))
        f["slot"] = (f["at"] // OCCURRENCE_S).astype(int)
        first = f.groupby(["service", "error_kind", "slot"])["at"].min().reset_index()
        events = [FailureEvent(s, float(a), k) for s, k, a in
                  zip(first["service"], first["error_kind"], first["at"], strict=True)]
    signals: list[tuple[str, float, str]] = []
    opened = transitions[transitions["to_state"].isin(("OPEN", "FORCED_OPEN"))]
    signals += [(s, float(a), "circuit_open") for s, a in
                zip(opened["service"], seconds(opened["time"]), strict=True)]
    runs = steps[~steps["workflow_id"].str.startswith("prevent:")]
    if len(runs):
        first = runs.assign(at=seconds(runs["time"])).groupby(
            ["service", "workflow_id"])["at"].min().reset_index()
        signals += [(s, float(a), workflow_of(w)) for s, w, a in
                    zip(first["service"], first["workflow_id"], first["at"], strict=True)]
    found = incidents(events, signals, INCIDENT_AROUND_S)
    if now is None:
        now = max((e.at for e in found), default=0.0)
    rows = [{"service": p.service, "frequency": p.frequency, "description": p.describe(),
             "typical_cause": p.typical_cause, "occurrences": p.occurrences,
             "periods_observed": p.periods_observed, "last_occurrence": p.last_occurrence,
             "next_expected": p.next_after(now), "recommended_action": p.recommended_action,
             "priority": p.priority, "estimated_impact": p.estimated_impact}
            for p in PatternRecognizer().fit(found)]
    return frame(rows, "patterns")


# -- MLflow ------------------------------------------------------------------------------

def mlflow_runs(uri: str, experiment: str, filter_string: str) -> pd.DataFrame:
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 - MLflow: 2.5 s to import

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    rows: list[dict[str, Any]] = []
    token = None
    while exp is not None:
        page = client.search_runs([exp.experiment_id], filter_string, max_results=1000,
                                  page_token=token)
        for r in page:
            rows.append({"run_id": r.info.run_id, "run_name": r.info.run_name,
                         "status": r.info.status,
                         "start_time": r.info.start_time / 1000.0,
                         "end_time": (r.info.end_time or np.nan) / 1000.0,
                         **{f"params.{k}": v for k, v in r.data.params.items()},
                         **{f"metrics.{k}": v for k, v in r.data.metrics.items()},
                         **{f"tags.{k}": v for k, v in r.data.tags.items()
                            if not k.startswith("mlflow.")}})
        token = page.token
        if not token:
            break
    df = pd.DataFrame(rows, columns=None if rows else
                      ["run_id", "run_name", "status", "start_time", "end_time"])
    for c in ("start_time", "end_time"):
        df[c] = pd.to_datetime(pd.to_numeric(df[c]), unit="s", utc=True)
    return df


def models(uri: str) -> pd.DataFrame:
    from learning.model_registry import versions  # noqa: PLC0415 - MLflow: 2.5 s to import

    found = versions(uri)
    df = pd.DataFrame(found["versions"],
                      columns=["version", "run_id", "created_at", "promotion"])
    df["version"] = df["version"].astype(int)
    df["champion"] = df["version"].astype(str) == (found["champion"] or "")
    df["created"] = pd.to_datetime(pd.to_numeric(df.pop("created_at")), unit="s", utc=True)
    return df[["version", "champion", "created", "run_id", "promotion"]]
