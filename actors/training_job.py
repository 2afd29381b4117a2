"""The training job: load history, train, log, replay, promote (DESIGN's learning path).

History comes from simulated runs of the given scenarios and from exported event logs
(``selfheal simulate --events``, labelled by their ``trouble.parquet``); each
service's monitor is trained on it as Ray tasks (:func:`learning.training.train`), the
recurring-failure patterns in it are found, the run, the model and the pattern table are logged
to MLflow and the model registered, the candidate is replayed against the
champion (or, before any promotion, the default policy) through the replay scenarios, and
promoted only if it heals at least as well on every one and better on one. Given the
orchestrator, each service's error threshold is tuned on the same history
(:func:`tune_thresholds`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from learning.patterns import FailureEvent, PatternRecognizer
from learning.thresholds import AdaptiveThresholdManager
from learning.training import GRID, Bucket, train
from simulation.engine import Simulation
from simulation.eventlog import read_training_history
from simulation.history import labelled_buckets
from simulation.promotion import compare, replay
from simulation.scenario import Scenario

from .ray_gateway import as_completed, get

__all__ = ["run_training", "tune_thresholds"]


def tune_thresholds(orchestrator: Any, segments: dict[str, list[list[Bucket]]],
                    window_s: float = 60.0, min_calls: float = 20.0) -> list[dict[str, Any]]:
    """Choose each service's error threshold on its labelled buckets (false positives at
    most 5 % of healthy buckets, false negatives reported against 1 %), and put in force,
    through the orchestrator (which audits each change and can revert it), only those that
    move by more than 20 %. Bucket rates are noisier than the orchestrator's longer window,
    so a threshold chosen on them errs on the side of fewer alarms."""
    current = get(orchestrator.thresholds.remote())
    manager = AdaptiveThresholdManager(current={s: t[0] for s, t in current.items()})
    applied = []
    for service, segs in sorted(segments.items()):
        samples = [(b.errors / b.calls, b.troubled) for seg in segs for b in seg
                   if b.calls >= min_calls]
        if not any(not bad for _, bad in samples):
            continue
        change = manager.apply(manager.choose(service, samples))
        if change is not None:
            applied.append(get(orchestrator.adopt_threshold.remote(
                service, change.new, window_s, change.reason)))
    return applied


def run_training(uri: str, history: Sequence[Scenario], replay_on: Sequence[Scenario], *,
                 use_ray: bool = True, promote: bool = True, grid: Sequence[float] = GRID,
                 event_logs: Sequence[str] = (),
                 live: dict[str, list[Bucket]] | None = None,
                 orchestrator: Any = None) -> dict[str, Any]:
    from learning.model_registry import champion, log_training, set_champion  # noqa: PLC0415

    segments: dict[str, list[Any]] = {}
    failures: list[FailureEvent] = []
    for sc in history:  # each run is a segment of its own
        result = Simulation(sc, predictive=False).run()
        for service, bs in labelled_buckets(result).items():
            segments.setdefault(service, []).append(bs)
        start = sc.start.timestamp()
        failures += [FailureEvent(d.service, start + d.at, d.signal) for d in result.detections]
    for directory in event_logs:  # exported event logs (selfheal simulate --events)
        for service, bs in read_training_history(directory).items():
            segments.setdefault(service, []).append(bs)
    for service, bs in (live or {}).items():  # from the live stores (actors.live_history)
        segments.setdefault(service, []).append(bs)
    model, tables = train(segments, fan_out=as_completed if use_ray else None, grid=grid)
    patterns = PatternRecognizer().fit(failures)
    run_id, version = log_training(uri, model, tables,
                                   sum(len(b) for segs in segments.values() for b in segs), grid,
                                   patterns=[{**dataclasses.asdict(p), "describe": p.describe()}
                                             for p in patterns])
    current = champion(uri)
    ours = replay(model, replay_on)
    theirs = replay(current[1] if current else None, replay_on)
    promoted, reasons = compare(ours, theirs)
    if promoted and promote:
        set_champion(uri, version, reasons)
    thresholds = tune_thresholds(orchestrator, segments) if orchestrator is not None else []
    return {"run_id": run_id, "version": version, "promoted": promoted and promote,
            "thresholds": thresholds,
            "against": f"version {current[0]}" if current else "the default policy",
            "reasons": reasons, "policies": {s: p.h for s, p in model.policies.items()},
            "metrics": model.metrics, "patterns": [p.describe() for p in patterns]}
