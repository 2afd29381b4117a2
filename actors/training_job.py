"""The training job: read history, fit, replay, log, register, promote (DESIGN's learning
path), each phase timed.

History comes from simulated runs of the given scenarios, from exported event logs
(``selfheal simulate --events``, labelled by their ``trouble.parquet``) and from the live
stores (:mod:`actors.live_history`). Fit: each service's monitor is trained on it and the
recurring-failure patterns in it are found. Replay: the candidate and the champion (or, before
any promotion, the default policy) are replayed through the replay scenarios. Log: the run,
the model, the pattern table and the replay go to MLflow. Register: the model becomes a new
version, promoted only if it heals at least as well on every replay scenario and better on
one. With ``use_ray`` the simulated history, the training and the replays fan out as Ray tasks
(one per scenario, per service, per replay). Given the orchestrator, each service's error
threshold is tuned on the same history (:func:`tune_thresholds`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from healing.clock import Clock, SystemClock
from learning.monitor import MonitorPolicy
from learning.patterns import FailureEvent, PatternRecognizer
from learning.thresholds import AdaptiveThresholdManager, Choice
from learning.training import GRID, Bucket, FanOut, MonitorModel, evaluate, train
from simulation.engine import Simulation
from simulation.eventlog import read_training_history
from simulation.history import labelled_buckets
from simulation.promotion import compare, replay
from simulation.scenario import SCENARIOS, Scenario, load_scenario

from .ray_gateway import as_completed, find_actor, get

__all__ = ["DEFAULT_SCENARIOS", "PHASES", "LiveSource", "calibrate_thresholds",
           "judge_on_history", "run_training", "scheduled_training", "simulated_history",
           "tune_thresholds"]

PHASES = ("read_history", "fit", "replay", "log", "register")
# history and replay when none is named: a leak, a slow degradation and a noisy healthy day
# (what a monitor must see early, late-but-surely, and not at all)
DEFAULT_SCENARIOS = tuple(str(SCENARIOS / f"{n}.yaml") for n in (
    "api_memory_leak", "slow_degradation", "noisy_but_healthy_day"))


@dataclass(frozen=True)
class LiveSource:
    """Where a scheduled training reads the live system's history: the metric streams, the
    audit trail, and how far back failures are looked for patterns (four weeks: a weekly
    pattern needs three occurrences)."""

    redis_url: str
    audit_url: str
    sample_rate: float
    patterns_lookback_s: float = 28 * 86400.0


def calibrate_thresholds(segments: dict[str, list[list[Bucket]]],
                         min_calls: float = 20.0) -> list[Choice]:
    """Each service's error threshold chosen on its labelled buckets: false positives at
    most 5 % of healthy buckets, incidents missed at most 1 % (by episode), or, where both
    cannot hold, the trade-off (``Choice.describe``)."""
    manager = AdaptiveThresholdManager()
    found = (manager.choose_on_history(s, segs, min_calls) for s, segs in sorted(segments.items()))
    return [c for c in found if c is not None]


def tune_thresholds(orchestrator: Any, segments: dict[str, list[list[Bucket]]],
                    window_s: float = 60.0, min_calls: float = 20.0,
                    choices: list[Choice] | None = None) -> list[dict[str, Any]]:
    """Put in force, through the orchestrator (which audits each change and can revert it),
    the thresholds :func:`calibrate_thresholds` chooses (or ``choices``, when the caller
    already has them) that move by more than 20 %. Bucket rates are noisier than the
    orchestrator's longer window, so a threshold chosen on them errs on the side of fewer
    alarms."""
    current = get(orchestrator.thresholds.remote())
    manager = AdaptiveThresholdManager(current={s: t[0] for s, t in current.items()})
    applied = []
    for choice in choices if choices is not None else calibrate_thresholds(segments, min_calls):
        change = manager.apply(choice)
        if change is not None:
            applied.append(get(orchestrator.adopt_threshold.remote(
                choice.service, change.new, window_s, change.reason)))
    return applied


def simulated_history(sc: Scenario) -> tuple[dict[str, list[Bucket]], list[FailureEvent]]:
    """One scenario run without the predictive monitor: each service's labelled buckets, and
    the failures detected (what patterns are learnt from)."""
    result = Simulation(sc, predictive=False).run()
    start = sc.start.timestamp()
    return labelled_buckets(result), [FailureEvent(d.service, start + d.at, d.signal)
                                      for d in result.detections]


def _read_history(history: Sequence[Scenario], event_logs: Sequence[str],
                  live: dict[str, list[Bucket]] | None, fan_out: FanOut | None
                  ) -> tuple[dict[str, list[list[Bucket]]], list[FailureEvent]]:
    segments: dict[str, list[list[Bucket]]] = {}
    failures: list[FailureEvent] = []
    calls = [(sc,) for sc in history]
    runs = fan_out(simulated_history, calls) if fan_out is not None else \
        ((i, simulated_history(*c)) for i, c in enumerate(calls))
    for _, (buckets, found) in sorted(runs, key=lambda r: r[0]):  # each run, its own segment
        for service, bs in buckets.items():
            segments.setdefault(service, []).append(bs)
        failures += found
    for directory in event_logs:  # exported event logs (selfheal simulate --events)
        for service, bs in read_training_history(directory).items():
            segments.setdefault(service, []).append(bs)
    for service, bs in (live or {}).items():  # from the live stores (actors.live_history)
        segments.setdefault(service, []).append(bs)
    return segments, failures


def judge_on_history(model: MonitorModel | None, history: dict[str, list[Bucket]]
                     ) -> dict[str, dict[str, Any]]:
    """What ``model`` (None: the default policy) would have done on each service's live
    history, in the form of a replay's metrics: live services appear in no scenario, so this
    is how the promotion gate sees them. In-sample (the candidate was fitted on the same
    buckets): it can refuse a candidate that is worse there, not prove one is better
    elsewhere, which is why the scenario replays gate too."""
    out = {}
    for service, buckets in sorted(history.items()):
        policy = (model.policies.get(service) if model else None) or MonitorPolicy()
        m = evaluate(policy, service, [buckets])
        out[f"live history of {service}"] = {
            "mttd_s": None if m["detection_delay_s"] < 0 else m["detection_delay_s"],
            "false_positive_rate": m["false_positive_rate"],
            "false_negative_rate": m["false_negative_rate"], "availability": None}
    return out


def run_training(uri: str, history: Sequence[Scenario], replay_on: Sequence[Scenario], *,
                 use_ray: bool = True, promote: bool = True, grid: Sequence[float] = GRID,
                 event_logs: Sequence[str] = (),
                 live: dict[str, list[Bucket]] | None = None,
                 live_failures: Sequence[FailureEvent] = (),
                 orchestrator: Any = None, clock: Clock | None = None) -> dict[str, Any]:
    """Train, log, replay and (if better) promote; returns what happened, with the seconds
    each phase took under ``phases_s`` (on ``clock``'s monotonic time)."""
    from learning.model_registry import (  # noqa: PLC0415 - MLflow: 2.5 s to import
        champion,
        log_training,
        register,
        set_champion,
    )

    fan_out = as_completed if use_ray else None
    phases: dict[str, float] = {}
    clock = clock or SystemClock()
    t = clock.now()

    def lap(name: str) -> None:
        nonlocal t
        now = clock.now()
        phases[name] = round(now - t, 3)
        t = now

    segments, failures = _read_history(history, event_logs, live, fan_out)
    lap("read_history")
    model, tables = train(segments, fan_out=fan_out, grid=grid)
    recognizer = PatternRecognizer()
    patterns = recognizer.fit([*failures, *live_failures])
    combinations = recognizer.combinations([*failures, *live_failures])
    calibrated = calibrate_thresholds(segments)
    lap("fit")
    current = champion(uri)
    ours = {**replay(model, replay_on, fan_out=fan_out), **judge_on_history(model, live or {})}
    theirs = {**replay(current[1] if current else None, replay_on, fan_out=fan_out),
              **judge_on_history(current[1] if current else None, live or {})}
    promoted, reasons = compare(ours, theirs)
    lap("replay")
    run_id, model_uri = log_training(
        uri, model, tables, sum(len(b) for segs in segments.values() for b in segs), grid,
        patterns=[{**dataclasses.asdict(p), "describe": p.describe()} for p in patterns],
        combinations=[{**dataclasses.asdict(c), "describe": c.describe()} for c in combinations],
        replay={"candidate": ours, "champion": theirs, "reasons": reasons},
        thresholds=[{**dataclasses.asdict(c), "describe": c.describe()} for c in calibrated])
    lap("log")
    version = register(uri, model_uri)
    if promoted and promote:
        set_champion(uri, version, reasons)
    lap("register")
    thresholds = tune_thresholds(orchestrator, segments, choices=calibrated) \
        if orchestrator is not None else []
    return {"run_id": run_id, "version": version, "promoted": promoted and promote,
            "thresholds": thresholds, "phases_s": phases,
            "against": f"version {current[0]}" if current else "the default policy",
            "reasons": reasons, "policies": {s: p.h for s, p in model.policies.items()},
            "metrics": model.metrics, "patterns": [p.describe() for p in patterns],
            "combinations": [c.describe() for c in combinations],
            "calibrated_thresholds": [c.describe() for c in calibrated]}


def scheduled_training(uri: str, history: Sequence[str], replay_on: Sequence[str],
                       live: LiveSource | None, orchestrator: str | None,
                       now: float) -> dict[str, Any]:
    """One scheduled training (a Ray task the scheduler starts): the scenario files, the
    live history up to ``now``, fanned out on Ray; the orchestrator (by name), if running,
    gets the tuned error thresholds."""
    from .live_history import live_history, recorded_failures, stream_services  # noqa: PLC0415
    from .stores.audit_sql import AuditStore  # noqa: PLC0415
    from .stores.redis_conn import connect  # noqa: PLC0415

    scenarios = [load_scenario(p) for p in history]
    replays = [load_scenario(p) for p in replay_on]
    buckets, failures = None, []
    if live is not None:
        client = connect(live.redis_url)
        try:
            buckets = live_history(client, live.audit_url, stream_services(client),
                                   live.sample_rate)
        finally:
            client.close()
        store = AuditStore(live.audit_url)
        try:
            failures = recorded_failures(store, now - live.patterns_lookback_s, now)
        finally:
            store.dispose()
    orch = find_actor(orchestrator) if orchestrator else None
    return run_training(uri, scenarios, replays, use_ray=True, live=buckets,
                        live_failures=failures, orchestrator=orch)
