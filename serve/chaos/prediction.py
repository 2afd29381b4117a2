"""What the simulator predicts for an experiment: its faults written as a scenario file and
replayed under the same catalogue, so the report can put prediction beside reality.

Only faults on a clinical service's provider have a simulator counterpart (an outage, a
latency spike for a slow or hanging provider, a memory leak for a leaking one); a killed
actor, a stopped store, a killed replica or an API flood acts on selfheal itself, which the
simulator does not model, and is reported as "not modelled". One effect of a stopped Redis is
modelled, because it decides when an outage is seen: the orchestrator's error-threshold watch
reads the metric streams there, so while Redis is stopped it sees nothing and an outage is
first seen by its circuit, which needs about half its 30 s window of failures. When the
replay's first detection of a fault falls while Redis is stopped, it is replayed again
without the watch, and says so.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import yaml

from simulation.runner import run_one
from simulation.scenario import load_scenario

from .faults import ActorCrash, NodeKill, ProviderFault, StoreDown
from .load import MIX
from .providers import LEAK_GROWTH
from .stack import PRIMARIES

__all__ = ["DIFFERENCES", "ORCHESTRATOR_KILLED", "predict", "scenario_for"]


def scenario_for(exp: Any, catalogue: Any, duration_s: float) -> dict[str, Any] | None:
    """The scenario file's content for ``exp``, or None when none of its faults is
    modelled."""
    faults = [f for f in exp.faults if isinstance(f, ProviderFault)]
    if not faults:
        return None
    weight = sum(w for w, *_ in MIX)
    services = {}
    for name, (primary, alternative) in PRIMARIES.items():
        # the load's kinds of request to this service: the first is the service's own, the
        # others its mix (life-critical diagnostic reasoning beside the ordinary kind)
        kinds = [(w, op, crit) for w, s, op, crit in MIX if s == name]
        total = sum(w for w, _, _ in kinds)
        (_, op, crit), others = kinds[0], kinds[1:]
        services[name] = {
            "rps": round(exp.rate_per_s * total / weight, 3),
            "latency_ms": {"p50": 6, "p99": 10},
            "error_rate": catalogue.services[name].error_rate,
            "providers": [primary, *([alternative] if alternative else [])],
            "operation": op, "criticality": crit,
            **({"mix": [{"share": round(w / total, 6), "operation": o, "criticality": c}
                        for w, o, c in others]} if others else {})}
    return {"name": f"chaos-{exp.name}", "duration": f"{int(duration_s)}s", "seed": exp.seed,
            "services": services,
            "faults": [{"service": f.service, "target": f.provider, **_KINDS[f.mode],
                        "at": f"{int(f.at_s)}s", "for": f"{max(1, int(f.duration_s))}s"}
                       for f in faults]}


# A provider fault's counterpart in the simulator. It has no hang: a call that never answers
# is a latency spike past every timeout there (live, a hung call is judged when the guard's
# timeout ends it, so the two differ by design). A leak grows as the stand-in's does.
_KINDS: dict[str, dict[str, Any]] = {
    "fail": {"kind": "outage"},
    "slow": {"kind": "latency_spike"},
    "hang": {"kind": "latency_spike", "params": {"latency_factor": 10_000.0}},
    "leak": {"kind": "memory_leak", "params": {"growth": LEAK_GROWTH}},
}
# Where the replay of a fault kind is known to differ from the running service, and why
# (found by the suite's runs, docs/chaos.md): the report gives the reason beside a live
# figure beyond 1.5x of the prediction. A fault kind not here has no known difference, and a
# figure beyond 1.5x of its prediction is reported as unexplained.
DIFFERENCES = {
    "hang": "the simulator has no hang: it replays one as a latency spike past every timeout "
            "and sees it at once; live, a hung call is judged only when it ends (reset when "
            "the hang ends, or the guard's timeout), and the life-critical calls, never shed, "
            "wait on it meanwhile",
    "leak": "the simulator's guards do not retry: live, a call fails only when its retry "
            "fails too, so the leak's failures cross the error-threshold watch's and the "
            "breakers' thresholds later (the predictive monitor counts the failed attempts a "
            "retry hid)",
    "slow": "the simulator answers every request at its arrival, so a provider slow but "
            "within its timeouts is not a failure there; live, its calls fill the provider's "
            "bulkhead, which sheds them to the fallback tiers",
}
# The simulator does not model selfheal's own actors. The orchestrator runs the error-threshold
# watch that sees an outage first; killed (or its node) while an outage is new, whether the
# watch's first check comes before the kill or after Ray has restarted it is a race.
ORCHESTRATOR_KILLED = ("the simulator does not model selfheal's own actors: the orchestrator, "
                       "whose error-threshold watch sees an outage first, was killed while "
                       "the outage was new, and the outage was seen by whichever came first, "
                       "the watch's check before the kill or after Ray restarted it")


def predict(exp: Any, catalogue: Any, duration_s: float, out_dir: pathlib.Path
            ) -> dict[str, Any] | None:
    """Write the scenario file to ``out_dir`` and replay it; the simulator's MTTD, MTTR and
    availability per incident, or None when nothing is modelled."""
    content = scenario_for(exp, catalogue, duration_s)
    if content is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{content['name']}.yaml"
    path.write_text("# written by the chaos suite: the experiment's provider faults, for the "
                    "simulator\n" + yaml.safe_dump(content, sort_keys=False))
    scenario = load_scenario(path)
    metrics = run_one(scenario, exp.seed, catalogue=catalogue)["healing"]
    blind = _detected_while_redis_stopped(exp, metrics["incidents"])
    if blind:  # every error threshold out of reach: the watch never fires
        catalogue = dataclasses.replace(catalogue, services={
            n: dataclasses.replace(s, error_threshold=1.0) for n, s in catalogue.services.items()})
        metrics = run_one(scenario, exp.seed, catalogue=catalogue)["healing"]
    return {"scenario": path.name, "availability": metrics["availability"],
            # a difference within one check of the error-threshold watch is one beat of it
            "beat_s": catalogue.errors.check_s,
            "differences": _differences(exp),
            **({"modelled": "Redis was stopped when the simulator first saw the fault: "
                            "replayed without the error-threshold watch, which reads the "
                            "metric streams there"} if blind else {}),
            "incidents": [{"service": i["service"], "start_s": i["start_s"],
                           "mttd_s": _since(i, "detected_s"),
                           "mttr_s": _since(i, "recovered_s")}
                          for i in metrics["incidents"]],
            "services": {k: v["availability"] for k, v in metrics["services"].items()}}


def _differences(exp: Any) -> dict[str, str]:
    """The known reasons each provider fault of ``exp`` may differ from its replay."""
    killed = any(isinstance(f, ActorCrash | NodeKill) and f.actor == "orchestrator"
                 for f in exp.faults)
    out = {}
    for f in exp.faults:
        if isinstance(f, ProviderFault) and f.mode in DIFFERENCES:
            out[f.name] = DIFFERENCES[f.mode]
        elif isinstance(f, ProviderFault) and killed:
            out[f.name] = ORCHESTRATOR_KILLED
    return out


def _detected_while_redis_stopped(exp: Any, incidents: list[dict[str, Any]]) -> bool:
    """Whether the replay first detected an incident while ``exp`` had Redis stopped."""
    stops = [(f.at_s, f.at_s + f.duration_s) for f in exp.faults
             if isinstance(f, StoreDown) and f.store == "redis"]
    return any(i["detected_s"] is not None and lo <= i["detected_s"] <= hi
               for i in incidents for lo, hi in stops)


def _since(incident: dict[str, Any], key: str) -> float | None:
    at = incident[key]
    return None if at is None else round(at - incident["start_s"], 1)
