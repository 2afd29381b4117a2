"""The experiments: one fault at a time, then several at once; the full suite (``make
chaos``) and the short one that ``make test`` runs.

Times are seconds from the start of the load. Experiments that time a recovery run long
enough for the simulator's definition of MTTR to be measurable: the fault, the circuit's
wait in the open state, then a sustained window of served requests (60 s).
"""

from __future__ import annotations

import time
from typing import Any

from .experiment import Experiment
from .faults import (
    ActorCrash,
    ApiFlood,
    MetricBuffersFull,
    NodeKill,
    ProviderFault,
    ReplicaKill,
    StoreDown,
)
from .load import OpenLoop
from .stack import ChaosStack

__all__ = ["full_suite", "multi_node_suite", "short_suite", "sustainable_rate"]

CR = "clinical_reasoning:gemini:pro"


def full_suite(rate: float) -> list[Experiment]:
    return [
        Experiment("provider-outage", [ProviderFault(20, 60, key=CR)], 200, rate,
                   notes=["the primary AI provider of clinical reasoning fails for 60 s"]),
        Experiment("outage-after-a-blip", [ProviderFault(5, 6, key=CR, timed=False),
                                           ProviderFault(45, 60, key=CR)], 240, rate,
                   notes=["a 6 s blip of clinical reasoning's primary starts a recovery run "
                          "(not timed: the outage falls in its MTTR window); 34 s after it the "
                          "provider fails for 60 s: the outage must get its own run, not "
                          "wait out the blip's cool-down"]),
        Experiment("prescriptive-and-single-provider-outage", [
            ProviderFault(20, 60, key="pharmaguard:pharmaguard_api"),
            ProviderFault(30, 40, key="care_locator:care_locator_api")], 200, rate,
            notes=["drug interactions (prescriptive: never cached) and the care locator "
                   "(no alternative provider) fail, overlapping"]),
        Experiment("slow-provider", [ProviderFault(20, 30, key="xray_analysis:gemini:pro",
                                                   mode="slow")], 170, rate,
                   notes=["imaging's primary answers after 2 s for 30 s; its bulkhead "
                          "(learnt limit, 16 queued up to 5 s) sheds what it cannot hold to "
                          "the fallback tiers"]),
        Experiment("hanging-provider", [ProviderFault(20, 10, key=CR, mode="hang")], 150,
                   rate, notes=["clinical reasoning's primary holds every call for 10 s, then "
                                "resets them, under its 30 s timeout; the held calls hold "
                                "the generator's workers, and once reset they are retried "
                                "and answered"]),
        Experiment("leaking-provider", [ProviderFault(20, 90, key=CR, mode="leak")], 200,
                   rate, notes=["clinical reasoning's primary leaks memory for 90 s: a "
                                "call fails with a chance growing by 50 % a minute"]),
        Experiment("metric-buffers-full-during-an-outage", [
            ProviderFault(20, 60, key=CR), MetricBuffersFull(25, 30, buffer_max=2_000)],
            200, rate, notes=["Redis stops for 30 s during an outage and the guards' metric "
                              "buffers (cut to 2,000 events) fill and drop events"]),
        Experiment("actors-killed-during-an-outage", [
            ProviderFault(20, 60, key=CR), ActorCrash(25, actor="orchestrator"),
            ActorCrash(30, actor=f"circuit:{CR}"), ActorCrash(35, actor="monitor"),
            ActorCrash(40, actor="health")], 200, rate,
            notes=["every long-lived actor and the outage's circuit actor crash while the "
                   "outage is being healed"]),
        Experiment("stores-down-during-an-outage", [
            StoreDown(15, 30, store="redis"), ProviderFault(20, 60, key=CR),
            StoreDown(55, 30, store="postgres")],
            200, rate, notes=["Redis stops for 30 s as the outage starts; PostgreSQL stops "
                              "for 30 s while it goes on"]),
        Experiment("api-abuse-and-a-replica-killed", [
            ApiFlood(20, requests=500), ReplicaKill(30), ApiFlood(40, requests=200)],
            90, rate, notes=["malformed and unauthenticated requests, and the control API's "
                             "replica killed under load"]),
    ]


def multi_node_suite(rate: float) -> list[Experiment]:
    """On a head and two worker nodes: the worker running the orchestrator dies during an
    outage, then the one running the outage's circuit actor; a fresh worker joins 10 s
    after each."""
    return [Experiment("worker-nodes-killed-during-an-outage", [
        ProviderFault(20, 60, key=CR), NodeKill(30, 10, actor="orchestrator"),
        NodeKill(50, 10, actor=f"circuit:{CR}")], 200, rate,
        notes=["3 nodes: the orchestrator's worker node and then the circuit actor's are "
               "killed while the outage is healed"])]


def short_suite(rate: float) -> list[Experiment]:
    """Every kind of fault, overlapping, in about a minute (``make test``)."""
    return [Experiment("short: overlapping faults under load", [
        ProviderFault(5, 25, key=CR), ActorCrash(8, actor="orchestrator"),
        MetricBuffersFull(12, 5, buffer_max=20), StoreDown(18, 5, store="postgres"),
        ApiFlood(22, requests=60),
        ProviderFault(24, 8, key="pharmaguard:pharmaguard_api")], 40, rate, settle_s=90.0,
        notes=["a provider outage, the orchestrator killed, Redis stopped with the metric "
               "buffers full and PostgreSQL stopped, 5 s each, an API flood and a "
               "prescriptive outage, overlapping"])]


def sustainable_rate(stack: ChaosStack,
                     rates: tuple[float, ...] = (50, 100, 200, 400, 800, 1600, 3200),
                     step_s: float = 8.0) -> dict[str, Any]:
    """Ramp the open-loop generator with no fault and keep the highest rate the stack kept
    up with: every request answered by its primary, and the schedule held (p99 lateness
    under 0.25 s). The suite runs at 70 % of it."""
    steps = []
    best = 0.0
    for rate in rates:
        loop = OpenLoop(stack.send, rate, tag=f"ramp-{int(rate)}", seed=int(rate)).start()
        try:
            time.sleep(step_s)
        finally:
            entries = loop.stop()
        late = loop.lateness()
        primary = sum(e.outcome == "primary" for e in entries)
        held = bool(entries) and primary == len(entries) and late["p99"] < 0.25
        steps.append({"rate_per_s": rate, "sent": len(entries), "primary": primary,
                      "lateness_p99_s": round(late["p99"], 3), "held": held})
        if not held:
            break
        best = rate
    return {"steps": steps, "sustained_per_s": best, "suite_rate_per_s": round(0.7 * best, 1),
            "ceiling_reached": bool(steps) and not steps[-1]["held"]}
