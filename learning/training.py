"""Training the predictive monitor per service, on labelled history.

History is, per service, segments (separate stretches of time) of :class:`Bucket`: calls
and errors in a time bucket, and whether the service was really in trouble then (from fault
windows in simulated history, or incidents in the audit trail).

* :func:`evaluate` replays a :class:`MonitorPolicy` over it and measures what matters:
  precision, recall, the false-positive rate (alarms per healthy bucket), the false-negative
  rate (troubled episodes never alarmed) and the detection delay.
* :func:`train_service` picks, from a grid of evidence levels ``h``, the one with the
  shortest delay among those meeting the targets (false-negative rate at most 1 %,
  false-positive rate at most ``max_fpr``); when none meets both, the one with the fewest
  misses among those with the fewest false positives.
* :func:`train` does every service, fanned out as Ray tasks when asked.

The trained model is a :class:`MonitorModel`: a policy per service, as JSON. A short history
cannot show how often a low ``h`` cries wolf, which is why a candidate is only promoted after
a replay (``simulation.promotion``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .monitor import MonitorPolicy, PredictiveMonitor

__all__ = ["Bucket", "FanOut", "MonitorModel", "evaluate", "train", "train_service"]

GRID = (4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 28.0)


@dataclass(frozen=True, slots=True)
class Bucket:
    start: float
    calls: float
    errors: float
    troubled: bool


@dataclass(frozen=True)
class MonitorModel:
    policies: dict[str, MonitorPolicy]
    metrics: dict[str, dict[str, float]]

    def to_json(self) -> str:
        return json.dumps({"policies": {s: dataclasses.asdict(p) for s, p in
                                        sorted(self.policies.items())},
                           "metrics": self.metrics}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MonitorModel:
        d = json.loads(text)
        # settings a later version dropped (say latency_threshold, which became latency_h)
        # are left out, so a model registered before an upgrade still loads
        known = {f.name for f in dataclasses.fields(MonitorPolicy)}
        return cls({s: MonitorPolicy(**{k: v for k, v in p.items() if k in known})
                    for s, p in d["policies"].items()}, d["metrics"])


def evaluate(policy: MonitorPolicy, service: str, segments: Sequence[Sequence[Bucket]],
             settle_s: float = 120.0) -> dict[str, float]:
    """Replay ``policy`` over each segment of history (a fresh monitor for each: they are
    separate stretches of time); the detection metrics over all of them
    (``detection_delay_s`` is -1 when there was no troubled episode to detect: MLflow
    metrics cannot be empty)."""
    delays: list[float] = []
    missed = episodes_n = alarms_n = true_alarms = healthy = 0
    for buckets in segments:
        monitor = PredictiveMonitor(policy)
        alarms = []
        for b in buckets:
            monitor.observe(service, b.start, b.calls, b.errors)
            alarms += monitor.tick(b.start + policy.bucket_s)
        episodes: list[tuple[float, float]] = []  # troubled spans
        for b in buckets:
            end = b.start + policy.bucket_s
            if b.troubled:
                if episodes and b.start <= episodes[-1][1]:
                    episodes[-1] = (episodes[-1][0], end)
                else:
                    episodes.append((b.start, end))
        for start, end in episodes:
            hit = [a.at for a in alarms if start <= a.at <= end + settle_s]
            if hit:
                delays.append(min(hit) - start)
            else:
                missed += 1
        true_alarms += sum(1 for a in alarms
                           if any(s <= a.at <= e + settle_s for s, e in episodes))
        alarms_n += len(alarms)
        episodes_n += len(episodes)
        healthy += sum(1 for b in buckets if not b.troubled)
    false_alarms = alarms_n - true_alarms
    return {
        "precision": true_alarms / alarms_n if alarms_n else 1.0,
        "recall": 1.0 - missed / episodes_n if episodes_n else 1.0,
        "false_positive_rate": false_alarms / healthy if healthy else 0.0,
        "false_negative_rate": missed / episodes_n if episodes_n else 0.0,
        "detection_delay_s": sum(delays) / len(delays) if delays else -1.0,
        "episodes": float(episodes_n), "alarms": float(alarms_n),
    }


def train_service(service: str, segments: Sequence[Sequence[Bucket]], *,
                  base: MonitorPolicy | None = None,
                  grid: Sequence[float] = GRID, max_fpr: float = 0.001,
                  max_fnr: float = 0.01) -> tuple[MonitorPolicy, dict[str, float],
                                                  list[dict[str, float]]]:
    """The chosen policy for ``service``, its metrics, and the whole grid's."""
    base = base if base is not None else MonitorPolicy()
    table = []
    for h in grid:
        m = evaluate(dataclasses.replace(base, h=h), service, segments)
        table.append({"h": h, **m})
    meeting = [r for r in table
               if r["false_positive_rate"] <= max_fpr and r["false_negative_rate"] <= max_fnr]
    if meeting:
        best = min(meeting, key=lambda r: (r["detection_delay_s"], -r["h"]))
    else:  # keep false alarms down first: they are what makes people stop reading alerts
        best = min(table, key=lambda r: (r["false_positive_rate"] > max_fpr,
                                         r["false_negative_rate"], r["false_positive_rate"]))
    return dataclasses.replace(base, h=best["h"]), best, table


def _train_one(service: str, segments: list[list[Bucket]], grid: Sequence[float]
               ) -> tuple[str, MonitorPolicy, dict[str, float], list[dict[str, float]]]:
    policy, metrics, table = train_service(service, segments, grid=grid)
    return service, policy, metrics, table


FanOut = Callable[[Callable[..., Any], Sequence[tuple[Any, ...]]], Iterable[tuple[int, Any]]]


def train(history: dict[str, list[list[Bucket]]], *, fan_out: FanOut | None = None,
          grid: Sequence[float] = GRID) -> tuple[MonitorModel, dict[str, list[dict[str, float]]]]:
    """Train every service; returns the model and each service's grid. ``fan_out`` runs the
    services elsewhere (``actors.ray_gateway.as_completed``: a Ray task each); None: here."""
    items = sorted(history.items())
    calls = [(s, b, grid) for s, b in items]
    results: list[Any] = [None] * len(calls)
    if fan_out is not None:
        for i, r in fan_out(_train_one, calls):
            results[i] = r
    else:
        results = [_train_one(*c) for c in calls]
    policies = {s: p for s, p, _, _ in results}
    metrics = {s: m for s, _, m, _ in results}
    tables = {s: t for s, _, _, t in results}
    return MonitorModel(policies, metrics), tables
