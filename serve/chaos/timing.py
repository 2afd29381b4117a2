"""MTTD and MTTR of the faults that act on a clinical service, in wall time, by the same
definitions the simulator reports (:mod:`simulation.metrics`).

* detected: the first detection signal for the service after the fault began, as the
  audit trail and the orchestrator record it (a circuit of the service opening, or a
  trigger reaching the orchestrator: a circuit open, a failed health check, the error
  threshold, an anomaly);
* recovered: the simulator's rule, applied to the generator's log: the first second from
  which the service's requests were answered (primary or an allowed fallback) at the
  service's target share for a sustained window, after the last window that missed it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import httpx

from simulation.metrics import LOOKAHEAD_S, SUSTAIN_S, recovered_at, served_target

from .ledger import Entry

__all__ = ["paged", "per_second", "timings", "trail", "watch_lines"]

WATCH_UNDETECTED_S = 60.0  # how far the watch's rounds are shown when nothing detected it


def paged(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged API listing."""
    items: list[dict[str, Any]] = []
    while True:
        page = client.get(path, params={**params, "offset": len(items), "limit": 1000})
        page.raise_for_status()
        body = page.json()
        items += body["items"]
        if not body["items"] or len(items) >= body["total"]:
            return items


def per_second(entries: list[Entry], service: str, seconds: int) -> tuple[list[int], list[int]]:
    """Requests sent and answered in each second of the run, for one service."""
    total, served = [0] * seconds, [0] * seconds
    for e in entries:
        i = int(e.due)
        if e.service == service and i < seconds:
            total[i] += 1
            served[i] += e.answered
    return total, served


def timings(stack: Any, exp: Any, entries: list[Entry], injected: dict[int, float],
            wall0: float) -> list[dict[str, Any]]:
    """Per fault that acts on a service: when it began, MTTD and MTTR in seconds (None:
    not detected, or not recovered within the run)."""
    out = []
    seconds = int(max((e.due for e in entries), default=0.0)) + 1
    for i, f in enumerate(exp.faults):
        if f.service is None or not f.timed or i not in injected:
            continue
        start = injected[i]
        with stack.client("auditor") as c:
            moved = paged(c, "/api/v1/audit", kind="circuit_transition", service=f.service,
                          since=wall0 + start)
            steps = paged(c, "/api/v1/audit", kind="recovery_step", service=f.service,
                          since=wall0 + start)
            found = c.get("/api/v1/detections", params={"since": wall0 + start,
                                                         "service": f.service}).json()
            # the watch's rounds from the one before the fault: a beat and a second before it
            before = stack.catalogue.errors.check_s + 1.0
            watched = c.get("/api/v1/watch", params={"since": wall0 + start - before,
                                                     "service": f.service}).json()
        signals = [t["at"] for t in moved if t["data"]["to_state"] == "OPEN"]
        signals += [d["at"] for d in found]
        detected = min(signals) - wall0 if signals else None
        total, served = per_second(entries, f.service, seconds)
        s0 = int(start)
        horizon = min(seconds, int(start + f.duration_s) + LOOKAHEAD_S)
        target = served_target(stack.catalogue.services[f.service].error_rate)
        recovered = recovered_at(total[s0:], served[s0:], target, s0, horizon, seconds)
        out.append({
            "fault": f.describe(), "service": f.service, "start_s": round(start, 1),
            "duration_s": f.duration_s,
            "mttd_s": None if detected is None else round(max(0.0, detected - start), 1),
            "mttr_s": None if recovered is None else round(recovered - s0, 1),
            # None above means the run ended before a sustained window after the last miss
            "sustain_s": SUSTAIN_S,
            "availability": round(sum(served) / sum(total), 4) if sum(total) else None,
            # what the circuits and the orchestrator did meanwhile, from the audit trail: how a
            # reader of the report tells an MTTR spent waiting on an open circuit from one
            # spent in a recovery run
            "trail": trail(moved, steps, wall0 + start,
                           math.inf if recovered is None else wall0 + recovered, found,
                           watch_lines(watched, f.service, wall0 + (
                               start + WATCH_UNDETECTED_S if detected is None else detected))),
        })
    return out


def trail(moved: list[dict[str, Any]], steps: list[dict[str, Any]], start: float,
          until: float, detections: Sequence[dict[str, Any]] = (),
          watched: Sequence[tuple[float, str]] = (), most: int = 40) -> list[str]:
    """The fault's circuit transitions, the detections that reached the orchestrator (and
    what it did with each: queued, coalesced, cooling down, no workflow) and the recovery
    steps, until it was recovered, as lines "+12.3 s circuit gemini:pro CLOSED -> OPEN
    (reason)", in time order; and ``watched`` (:func:`watch_lines`), which run until the
    detection rather than the recovery (a service with a cache recovers at once, and a
    late detection is what its lines explain)."""
    lines = [(t["at"], f"circuit {t['data']['circuit']} {t['data']['from_state']} -> "
                       f"{t['data']['to_state']} ({t['data']['reason']})") for t in moved]
    lines += [(d["at"], f"detected by {d['trigger']}: {d['admitted']}") for d in detections]
    lines += [(r["at"], f"step {r['data']['step']} {r['data']['action']}: "
                        f"{r['data']['status']}{_why(r['data'])}") for r in steps]
    lines = sorted([x for x in lines if x[0] <= until + 5.0] + list(watched))
    return [f"{at - start:+.1f} s {text[:120]}" for at, text in lines[:most]]


def watch_lines(rounds: Sequence[dict[str, Any]], service: str, until: float
                ) -> list[tuple[float, str]]:
    """The error watch's readings of ``service`` up to ``until`` (GET /api/v1/watch), as
    (time, "watch: 300 errors in 1770 calls (16.9 %), recent 90/300; quiet") lines: what
    the watch saw at each beat, and how long its round took."""
    out = []
    for r in rounds:
        seen = r["services"].get(service)
        if seen is None or r["at"] > until:
            continue
        errors, calls = seen["errors"], seen["calls"]
        share = f" ({100 * errors / calls:.1f} %)" if calls else ""
        out.append((r["at"], f"watch: {errors:.0f} errors in {calls:.0f} calls{share}, "
                             f"recent {seen['recent_errors']:.0f}/{seen['recent_calls']:.0f}; "
                             f"{seen['admitted'] or 'quiet'} (round {r['took_s']:.2f} s)"))
    return out


def _why(step: dict[str, Any]) -> str:
    """Why a step failed, as the orchestrator recorded it (its error, or the criteria it
    was judged by): a failed step with no reason is what a reader of the report asks about."""
    if step.get("status") != "failed":
        return ""
    result = step.get("result") or {}
    error = result.get("error") if isinstance(result, dict) else None
    return f" ({error or step.get('validation') or 'no reason recorded'})"

