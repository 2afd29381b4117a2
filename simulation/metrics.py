"""Outcome metrics, exactly as the design defines them, per incident, per service and overall.

* **incident**: one fault occurrence on one service.
* **MTTD**: fault start → the first detection signal for that service (circuit opened, health
  check failed, error threshold), if one came before the fault ended (plus a minute's grace).
* **MTTR**: fault start → users served successfully again at the target rate, sustained for
  60 s. Users are the service's and its dependents' (a database's fault is felt upstream).
  The target is ``max(0.9, 1 - max(1 %, 3 x the normal error rate))`` of requests served.
  Recovery is the start of the first 60 s window after the last one that misses the target,
  scanning from the fault's start to ten minutes after its end (or the next fault on that
  service); an incident no user ever felt has an MTTR of 0. Unrecovered when that window does
  not fit in the run.
* **automated recovery**: users never felt the incident, or were served at target for a full
  60 s window before the fault's own scheduled end (with no operator in the simulator, every
  recovery that came earlier is automated; the window keeps a fault's natural end from
  counting as healing); rate over all incidents.
* **false-positive rate**: fault-free service-minutes with a detection, over all fault-free
  service-minutes. A minute is not fault-free while a fault acts on the service or on one it
  depends on, or within two minutes after such a fault ends (signals still settling).
* **false-negative rate**: incidents never detected, over all incidents.
* **integrity violations**: served answers that fail the service's integrity check, cached
  data served for a prescriptive request, any fallback served for a life-critical one.
* **audit completeness**: audit records written, over failures (every guarded call whose
  primary failed, was rejected or routed) and recovery steps that needed one.
* **prevented faults**: fault occurrences averted before they began (a preventive restart);
  they are not incidents.
* **patient impact**: per request, none (the primary, or an alternative provider with no
  wait), delay (an alternative after the primary failed), degraded (cached, degraded or
  static answers), unavailable.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from .records import RunResult

__all__ = ["METRICS", "aggregate", "mean", "recovered_at", "run_metrics", "served_target",
           "time_to_detect"]

SUSTAIN_S = 60
SETTLE_S = 120
LOOKAHEAD_S = 600
DETECTION_GRACE_S = 60
# The report's headline metrics, in order.
METRICS = ("requests", "availability", "mttd_s", "mttr_s", "recovery_success_rate",
           "false_positive_rate", "false_negative_rate", "integrity_violations",
           "audit_completeness")


def run_metrics(r: RunResult) -> dict[str, Any]:
    """Every metric for one run."""
    sc = r.scenario
    duration = int(sc.duration_s)
    affected = {name: {name} | sc.dependents(name) for name in sc.services}
    incidents = []
    prevented = sum(1 for f in r.incidents if f.averted)
    for f in r.incidents:
        if f.averted:  # prevented: it never acted, so it is no incident
            continue
        service = f.spec.service
        start, end = f.start, f.actual_end
        detected = next((d.at for d in r.detections
                         if d.service == service and start <= d.at < end + DETECTION_GRACE_S),
                        None)
        later = [g.start for g in r.incidents if g.spec.service == service and g.start > start]
        horizon = min([duration, int(end) + LOOKAHEAD_S, *[int(x) for x in later]])
        recovered = _recovered_at(r, affected[service], int(start), horizon)
        incidents.append({
            "service": service, "kind": f.spec.kind.value, "target": f.provider,
            "start_s": round(start, 3), "end_s": round(end, 3),
            # when requests start failing: later than the start for a leak that shows in
            # memory first; detection time counts from here, and earlier is ahead of it
            "impact_s": round(f.impact_start, 3),
            "scheduled_end_s": round(f.end, 3),
            "cleared_early": f.cleared_at is not None and f.cleared_at < f.end,
            "detected_s": None if detected is None else round(detected, 3),
            "recovered_s": None if recovered is None else round(recovered, 3),
            "automated": recovered is not None and (
                recovered == int(start) or recovered + SUSTAIN_S <= f.end),
        })
    total = sum(sum(log.total) for log in r.logs.values())
    served = sum(sum(log.served) for log in r.logs.values())
    detected = [i for i in incidents if i["detected_s"] is not None]
    recovered = [i for i in incidents if i["recovered_s"] is not None]
    services = {}
    for name, log in r.logs.items():
        own = [i for i in incidents if i["service"] == name]
        services[name] = {
            "requests": sum(log.total),
            "availability": _ratio(sum(log.served), sum(log.total)),
            "mttd_s": mean([time_to_detect(i) for i in own if i["detected_s"] is not None]),
            "mttr_s": mean([i["recovered_s"] - i["start_s"] for i in own
                             if i["recovered_s"] is not None]),
            "impact": dict(log.impact),
        }
    fp_minutes, free_minutes = _false_positive_minutes(r)
    return {
        "requests": r.requests,
        "availability": _ratio(served, total),
        "mttd_s": mean([time_to_detect(i) for i in detected]),
        # how long before its first failed request a fault was detected (a leak seen in
        # memory), for the incidents detected ahead of their impact
        "detected_ahead_s": mean([i["impact_s"] - i["detected_s"] for i in detected
                                  if i["detected_s"] < i["impact_s"]]),
        "mttr_s": mean([i["recovered_s"] - i["start_s"] for i in recovered]),
        "recovery_success_rate": _ratio(sum(i["automated"] for i in incidents), len(incidents)),
        "false_positive_rate": _ratio(fp_minutes, free_minutes, empty=0.0),
        "false_negative_rate": _ratio(len(incidents) - len(detected), len(incidents),
                                      empty=0.0),
        "integrity_violations": r.integrity_violations,
        "audit_completeness": _ratio(r.audit_written, r.audit_expected, empty=1.0),
        "unrecovered_incidents": len(incidents) - len(recovered),
        "prevented_faults": prevented,
        "patient_impact": {k: sum(log.impact[k] for log in r.logs.values())
                           for k in ("none", "delay", "degraded", "unavailable")},
        "services": services,
        "incidents": incidents,
        "workflow_runs": len(r.runs),
    }


def _target(r: RunResult, services: set[str]) -> float:
    return served_target(max(r.scenario.services[s].error_rate for s in services))


def served_target(error_rate: float) -> float:
    """The share of requests that must be served for users to count as served again, for
    services whose worst normal error rate is ``error_rate`` (see the module doc)."""
    return max(0.9, 1.0 - max(0.01, 3 * error_rate))


def time_to_detect(incident: dict[str, Any]) -> float:
    """Time to detect, from the first failed request (0 when detected before it)."""
    return max(0.0, incident["detected_s"] - incident["impact_s"])


def _recovered_at(r: RunResult, services: set[str], start: int, horizon: int) -> float | None:
    """The second from which users were served at target for 60 s (see the module doc)."""
    end = int(r.scenario.duration_s)
    hi = min(end, horizon + SUSTAIN_S)  # the seconds looked at: [start, hi)
    total = [0] * (hi - start)
    served = [0] * (hi - start)
    for s in services:
        log = r.logs[s]
        for i, (t, v) in enumerate(zip(log.total[start:hi], log.served[start:hi],
                                       strict=True)):
            total[i] += t
            served[i] += v
    return recovered_at(total, served, _target(r, services), start, horizon, end)


def recovered_at(total: Sequence[int], served: Sequence[int], target: float, start: int,
                 horizon: int, end: int) -> float | None:
    """MTTR's rule, for the simulator and the live chaos suite alike: ``total[i]`` and
    ``served[i]`` are the requests of second ``start + i``; the second from which users were
    served at ``target`` for ``SUSTAIN_S`` seconds, after the last window that missed it,
    looking no further than ``horizon``; None when that window does not fit before ``end``."""
    pt = list(itertools.accumulate(total, initial=0))
    ps = list(itertools.accumulate(served, initial=0))
    last_miss = None
    for t in range(0, min(len(total) - 1, max(0, horizon - start - SUSTAIN_S)) + 1):
        w = min(t + SUSTAIN_S, len(total))
        t_sum = pt[w] - pt[t]
        if t_sum and ps[w] - ps[t] < target * t_sum:
            last_miss = t
    if last_miss is None:
        return float(start)
    recovered = start + last_miss + 1  # the first window after the last miss is all good
    if recovered + SUSTAIN_S > end:
        return None
    return float(recovered)


def _false_positive_minutes(r: RunResult) -> tuple[int, int]:
    sc = r.scenario
    minutes = math.ceil(sc.duration_s / 60)
    faulted: dict[str, set[int]] = {n: set() for n in sc.services}
    for f in r.incidents:
        if f.averted:
            continue
        hit = {f.spec.service} | sc.dependents(f.spec.service)
        lo = int(f.start // 60)
        hi = int((f.actual_end + SETTLE_S) // 60)
        for name in hit:
            faulted[name].update(range(lo, min(minutes - 1, hi) + 1))
    fired = {(d.service, int(d.at // 60)) for d in r.detections}
    free = sum(minutes - len(faulted[n]) for n in sc.services)
    false = sum(1 for (s, m) in fired if m not in faulted[s])
    return false, free


def _ratio(a: float, b: float, empty: float | None = None) -> float | None:
    return empty if b == 0 else a / b


def mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def aggregate(per_run: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Means of the headline metrics over runs, and their spread (min, max, sd)."""
    means: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for k in METRICS:
        xs = [m[k] for m in per_run if m[k] is not None]
        if not xs:
            means[k] = None
            continue
        mean = sum(xs) / len(xs)
        means[k] = mean
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
        spread[k] = {"min": min(xs), "max": max(xs), "sd": sd, "n": len(xs)}
    return means, spread
