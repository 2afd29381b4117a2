"""Replay-gated promotion: a candidate monitor model against the one in service.

Both are replayed through the same scenarios and seeds (the policy is the default one with
each model's per-service monitor policies). The candidate is promoted only if, on every
scenario, it detects at least as fast, raises no more false positives, misses no more
incidents and keeps availability, and on at least one it is strictly better.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from learning.training import FanOut, MonitorModel

from .engine import Simulation
from .metrics import run_metrics
from .policy import default_policy
from .scenario import Scenario

__all__ = ["compare", "replay"]

_EPS = 1e-9


def replay_one(model: MonitorModel | None, sc: Scenario) -> dict[str, float]:
    """One scenario's metrics with ``model`` (None: the default monitor policy)."""
    policy = default_policy(sc)
    if model is not None:
        policy = dataclasses.replace(policy, monitor_per_service={
            s: p for s, p in model.policies.items() if s in sc.services})
    m = run_metrics(Simulation(sc, policy=policy).run())
    return {k: m[k] for k in ("mttd_s", "false_positive_rate", "false_negative_rate",
                              "availability")}


def replay(model: MonitorModel | None, scenarios: Sequence[Scenario], *,
           fan_out: FanOut | None = None) -> dict[str, Any]:
    """Each scenario's metrics with ``model``; ``fan_out`` runs the scenarios elsewhere
    (``actors.ray_gateway.as_completed``: a Ray task each), None: one after another here."""
    calls = [(model, sc) for sc in scenarios]
    done = fan_out(replay_one, calls) if fan_out is not None else \
        ((i, replay_one(*c)) for i, c in enumerate(calls))
    results = dict(done)
    return {sc.name: results[i] for i, sc in enumerate(scenarios)}


def compare(candidate: dict[str, Any], champion: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether the candidate heals at least as well everywhere and better somewhere; and
    why, scenario by scenario."""
    reasons, better = [], False
    ok = True
    for name, c in candidate.items():
        h = champion[name]
        worse = []
        if _later(c["mttd_s"], h["mttd_s"]):
            worse.append(f"MTTD {c['mttd_s']} s > {h['mttd_s']} s")
        for k in ("false_positive_rate", "false_negative_rate"):
            if c[k] > h[k] + _EPS:
                worse.append(f"{k} {c[k]:.4f} > {h[k]:.4f}")
        if c["availability"] is not None and h["availability"] is not None and \
                c["availability"] < h["availability"] - _EPS:
            worse.append(f"availability {c['availability']:.4f} < {h['availability']:.4f}")
        gains = []
        if _later(h["mttd_s"], c["mttd_s"]):
            gains.append(f"MTTD {c['mttd_s']} s < {h['mttd_s']} s")
        if c["false_positive_rate"] < h["false_positive_rate"] - _EPS:
            gains.append("fewer false positives")
        if worse:
            ok = False
            reasons.append(f"{name}: worse: {', '.join(worse)}")
        elif gains:
            better = True
            reasons.append(f"{name}: better: {', '.join(gains)}")
        else:
            reasons.append(f"{name}: as good")
    return ok and better, reasons


def _later(a: float | None, b: float | None) -> bool:
    """``a`` is a later detection than ``b`` (no detection is the latest)."""
    if a is None:
        return b is not None
    return b is not None and a > b + _EPS
