"""One chaos experiment: steady state, load, faults, rollbacks, steady state again, and the
checks against the generator's log.

The shape is Chaos Toolkit's: a steady-state hypothesis checked before (an experiment on a
system that is already unwell proves nothing, so it is not run) and after (the system must
come back by itself, while the load goes on, within ``settle_s``); the faults' rollbacks run
whatever happens. What is judged afterwards is the generator's own history (Jepsen): every
request, its answer and the records it should have left (:mod:`.ledger`), read back through
the control API as an operator or auditor would.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from actors.ray_gateway import find_actor
from healing.safety import pseudonym

from .faults import Fault
from .ledger import (
    Entry,
    Violations,
    check_answers,
    check_audit,
    check_counters,
    check_steps,
    compare_groups,
    tally,
)
from .load import OpenLoop
from .stack import PRIMARIES, ChaosStack
from .timing import paged, timings

__all__ = ["Experiment", "counters", "recovery_quiet", "run_experiment", "steady_state"]

ACTORS = ("orchestrator", "health", "monitor")


@dataclass
class Experiment:
    """Load at ``rate_per_s`` for ``duration_s`` seconds, with ``faults`` on their times."""

    name: str
    faults: list[Fault]
    duration_s: float
    rate_per_s: float
    settle_s: float = 120.0  # how long the load goes on for the steady state to come back
    seed: int = 0
    notes: list[str] = field(default_factory=list)


def steady_state(stack: ChaosStack) -> dict[str, bool]:
    """The hypothesis: the API answers, the long-lived actors run, every circuit is closed
    and both stores answer (and, with a tracking server, the model registry answers through
    the API)."""
    out = {}
    try:
        with stack.client(timeout_s=10) as c:
            out["api_answers"] = c.get("/api/v1/livez").status_code == 200
            circuits = c.get("/api/v1/circuits").json()
            if stack.mlflow is not None:  # the model registry, through the API
                out["models_answer"] = c.get("/api/v1/models").status_code == 200
        out["circuits_closed"] = all(x["state"] == "closed" for x in circuits
                                     if x["name"] in stack.circuits)
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        out["api_answers"] = out["circuits_closed"] = False
        if stack.mlflow is not None:
            out["models_answer"] = False
    out["actors_running"] = all(find_actor(a) is not None for a in ACTORS)
    out["redis_answers"] = stack.redis.running()
    try:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(stack.postgres.url(), connect_timeout=3) as conn:
            out["database_answers"] = conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        out["database_answers"] = False
    return out


def recovery_quiet(runs: list[dict[str, Any]], detections: list[dict[str, Any]],
                   services: set[str], now: float, cooldown_s: float,
                   beats_s: float = 10.0) -> bool:
    """Part of the hypothesis before an experiment: recovery is at rest for the load's
    services. No run under way, none ended within the cool-down, no detection in the last
    two beats of the error-threshold watch (``beats_s``; times are wall clock).

    Otherwise the experiment times what came before it rather than its fault: after the
    load ramp of the full suite, the ramp's own overload tripped the watch a few seconds into
    the provider outage, and that run's cool-down held back the outage's alarms (an MTTR of
    105 s against a predicted 63, docs/chaos.md)."""
    for run in runs:
        if run.get("service") in services and (
                "ended_at" not in run or now - float(run["ended_at"]) < cooldown_s):
            return False
    return not any(d.get("service") in services and now - float(d["at"]) < beats_s
                   for d in detections)


def run_experiment(stack: ChaosStack, exp: Experiment) -> dict[str, Any]:
    """Run ``exp`` on ``stack``; returns its report (see :mod:`.report`)."""
    # the last experiment's system, or the load ramp's, may still settle: its recovery too,
    # so the wait covers a cool-down
    before = _settled(stack, exp.settle_s + stack.catalogue.cooldown_s, before=True)
    result: dict[str, Any] = {"name": exp.name, "faults": [f.describe() for f in exp.faults],
                              "steady_state_before": before, "notes": list(exp.notes)}
    if not all(before.values()):
        result["skipped"] = "the steady state did not hold before the experiment"
        return result
    tag = f"chaos-{uuid.uuid4().hex[:8]}"
    counted_before = counters(stack)  # the stack's counters outlive one experiment
    alerted_before = stack.alerts_delivered()
    loop = OpenLoop(stack.send, exp.rate_per_s, tag=tag, seed=exp.seed).start()
    wall0 = time.time()
    injected: dict[int, float] = {}  # fault index -> seconds from the start
    rolled: set[int] = set()
    errors: list[str] = []
    after: dict[str, bool] = {}
    stopped = False
    try:
        while loop.now() < exp.duration_s:
            now = loop.now()
            for i, f in enumerate(exp.faults):
                if i not in injected and now >= f.at_s:
                    injected[i] = loop.now()
                    try:
                        f.inject(stack)
                    except Exception as exc:  # reported; its rollback still runs
                        errors.append(f"{f.describe()}: inject: {type(exc).__name__}: {exc}")
                if i in injected and i not in rolled and now >= f.at_s + f.duration_s:
                    rolled.add(i)
                    _rollback(stack, f, errors)
            time.sleep(0.05)
    except KeyboardInterrupt:
        stopped = True
        raise
    finally:
        for i, f in enumerate(exp.faults):
            if i in injected and i not in rolled:
                _rollback(stack, f, errors)
        if stopped:  # from outside: faults rolled back, load stopped, nothing to judge
            loop.stop()
        else:
            after = _settled(stack, exp.settle_s)  # under load: the load goes on meanwhile
            ended = loop.now()
            entries = loop.stop()
    stack.flush()  # the audit records _audit reads below are buffered in the processes too
    if not all(after.values()):  # what an operator would look at first
        result["state_after"] = _state(stack)
    result.update(steady_state_after=after, fault_errors=errors, load=tally(entries),
                  lateness_s=loop.lateness(), duration_s=round(ended, 1),
                  rate_per_s=exp.rate_per_s)
    violations = check_answers(entries, stack.allowed_tiers())
    key = stack.settings.pseudonym_key_bytes()  # type: ignore[union-attr]
    audit_v, audit = _audit(stack, entries, tag, loop.patients, key, wall0)
    steps_v, steps, run_lines = _steps(stack, wall0)
    counted = {s: {k: v - counted_before.get(s, {}).get(k, 0) for k, v in c.items()}
               for s, c in counters(stack).items()}
    counters_v, tally_counters = check_counters(entries, counted)
    violations.merge(audit_v).merge(steps_v).merge(counters_v)
    for i, f in enumerate(exp.faults):
        if i not in injected:  # judged as not done, not as a promise it could not keep
            errors.append(f"{f.describe()}: not injected: the experiment's "
                          f"{exp.duration_s:g} s were over first")
            continue
        for broken in f.broken_promises():
            violations.add("fault_check", f"{f.describe()}: {broken}")
    # the whole trail, every experiment's so far: at thousands of requests a second that is
    # hundreds of thousands of records, checked at tens of thousands a second
    with stack.client("auditor", timeout_s=900) as c:
        verdict = c.post("/api/v1/audit/verify").json()
    if not verdict.get("intact"):
        violations.add("audit_verify", str({k: v for k, v in verdict.items()
                                            if k != "intact"})[:300])
    result.update(audit=audit, steps=steps, runs=run_lines, counters=tally_counters,
                  observed={f.describe(): f.observed for f in exp.faults if f.observed},
                  # what reached the on-call channel (a stand-in on loopback) meanwhile
                  alerts_delivered=stack.alerts_delivered() - alerted_before,
                  audit_intact=bool(verdict.get("intact")),
                  timings=timings(stack, exp, entries, injected, wall0),
                  groups=_groups(exp, entries),
                  violations=violations.summary(),
                  lost=audit["lost"] + steps["lost"] + violations.count("unanswered"),
                  safety_violations=sum(violations.count(r) for r in _SAFETY))
    result["passed"] = (not violations and all(after.values()) and not errors)
    return result


def _groups(exp: Experiment, entries: list[Entry]) -> dict[str, Any] | None:
    """The faulted services' requests beside the others', while the faults were on."""
    if not exp.faults:
        return None
    faulted = {f.service for f in exp.faults if f.service is not None}
    start = min(f.at_s for f in exp.faults)
    end = max(f.at_s + max(f.duration_s, 1.0) for f in exp.faults)
    return compare_groups(entries, faulted, (start, end))


_SAFETY = ("life_critical_substitute", "prescriptive_cached", "tier_not_allowed",
           "stale_without_warning", "failure_without_guidance", "unexpected_error")


def _settled(stack: ChaosStack, within_s: float, before: bool = False) -> dict[str, bool]:
    """The steady state as soon as it holds, or as it stands after ``within_s``; ``before``
    an experiment, with recovery at rest (:func:`recovery_quiet`). Not after one: its own
    runs have just ended, and the system is judged on coming back, not on forgetting."""
    deadline = time.monotonic() + within_s
    while True:
        state = steady_state(stack)
        if before:
            state["recovery_quiet"] = _recovery_quiet(stack)
        if all(state.values()) or time.monotonic() > deadline:
            return state
        time.sleep(1.0)


def _recovery_quiet(stack: ChaosStack) -> bool:
    now = time.time()
    try:
        with stack.client(timeout_s=10) as c:
            runs = c.get("/api/v1/recovery/runs").json()
            detections = c.get("/api/v1/detections", params={"since": now - 60}).json()
        return recovery_quiet(runs, detections, set(PRIMARIES), now,
                              stack.catalogue.cooldown_s)
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return False


def _rollback(stack: ChaosStack, f: Fault, errors: list[str]) -> None:
    try:
        f.rollback(stack)
    except Exception as exc:
        errors.append(f"{f.describe()}: rollback: {type(exc).__name__}: {exc}")


def _audit(stack: ChaosStack, entries: list[Any], tag: str, patients: int, key: bytes,
           wall0: float, wait_s: float = 60.0) -> tuple[Violations, dict[str, int]]:
    """The failure records of this experiment's patients, read once the trail has taken in
    what the processes spooled (polled until the count holds still, or ``wait_s``)."""
    mine = {pseudonym(f"{tag}-patient-{i:04d}", key) for i in range(patients)}
    deadline = time.monotonic() + wait_s
    last = -1
    while True:
        with stack.client("auditor") as c:
            items = paged(c, "/api/v1/audit", kind="failure_event", since=wall0 - 1)
        found = Counter(p for p in (i["data"]["clinical_context"]["patient"] for i in items)
                        if p in mine)
        v, tally_ = check_audit(entries, found, lambda p: pseudonym(p, key))
        total = sum(found.values())
        if (not v and total == last) or time.monotonic() > deadline:
            return v, tally_
        last = total
        time.sleep(1.0)


def _steps(stack: ChaosStack, wall0: float
           ) -> tuple[Violations, dict[str, int], list[str]]:
    """The recovery steps' check, and a line per run the experiment saw: when it started,
    which workflow on what trigger, and how it ended."""
    with stack.client("auditor") as c:
        runs = [r for r in c.get("/api/v1/recovery/runs", params={"since": wall0 - 1}).json()]
        full = [c.get(f"/api/v1/recovery/runs/{r['run_id']}").json() for r in runs]
        items = paged(c, "/api/v1/audit", kind="recovery_step", since=wall0 - 1)
    audited = Counter((i["data"]["workflow_id"], i["data"]["step"], i["data"]["status"])
                      for i in items)
    v, out = check_steps(full, audited)
    out["runs"] = len(full)
    lines = [f"+{r['started_at'] - wall0:.1f} s {r['workflow']} ({r['service']}) on "
             f"{r['trigger']}: {str(r.get('detail'))[:80]}; ended "
             f"{r.get('ended', 'not yet')}" for r in sorted(runs, key=lambda r: r["started_at"])]
    return v, out, lines


def counters(stack: ChaosStack) -> dict[str, dict[str, int]]:
    """The metric counters per service as of now, less the requests recovery's own guarded
    probes made (probe_succeeds), which the generator did not send.

    The processes' buffered counts are pushed first: a recorder flushes every 0.2 s, so
    calls that had just completed (the last of a load ramp, queued behind a bulkhead) would
    otherwise land after a "before" snapshot and be counted as this experiment's."""
    from actors.cluster_control import probe_counts  # noqa: PLC0415
    from actors.stores.metric_stream import read_counts  # noqa: PLC0415

    stack.flush()
    client = stack.redis.client(timeout_s=5)
    with contextlib.closing(client):
        out = {}
        for s in ("clinical_reasoning", "xray_analysis", "pharmaguard", "care_locator"):
            counted, probes = read_counts(client, s), probe_counts(client, s)
            out[s] = {k: v - probes.get(k, 0) for k, v in counted.items()}
        return out


def _state(stack: ChaosStack) -> dict[str, Any]:
    """The circuits and recovery runs as the API shows them."""
    try:
        with stack.client() as c:
            circuits = c.get("/api/v1/circuits").json()
            runs = c.get("/api/v1/recovery/runs").json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"circuits": {x["name"]: f"{x['state']} ({x.get('reason')})" for x in circuits},
            "runs": [{k: r.get(k) for k in ("service", "workflow", "trigger", "ended")}
                     for r in runs]}
