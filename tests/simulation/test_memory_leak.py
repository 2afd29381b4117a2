"""The library's memory leak, seen in memory: detected while memory climbs, healed by the
seed's memory-leak workflow before a single request fails; without the memory signal (the
error-rate monitor alone) it is seen only once requests fail."""

from __future__ import annotations

import dataclasses

from simulation.engine import Simulation
from simulation.metrics import run_metrics
from simulation.scenario import SCENARIOS, load_scenario


def unanswered(result):
    return sum(sum(log.total) - sum(log.served) for log in result.logs.values())


def primary_errors(result):
    """Calls to the API server that failed (a cached answer may have covered them)."""
    return sum(result.logs["api_server"].errors)


def test_the_leak_is_healed_before_its_first_failed_request():
    sc = load_scenario(SCENARIOS / "api_memory_leak.yaml")
    result = Simulation(sc).run()
    m = run_metrics(result)
    [incident] = m["incidents"]
    first_failure = incident["impact_s"]
    assert first_failure == incident["start_s"] + 40 * 60  # 50 % to 90 % at 1 % a minute
    [seen] = [d for d in result.detections if d.signal == "memory_growth"]
    assert incident["start_s"] < seen.at < first_failure
    assert m["detected_ahead_s"] > 30 * 60 and m["mttd_s"] == 0.0
    [run] = [r for r in result.runs if r["trigger"] == "memory_growth"]
    assert run["workflow"] == "memory-leak-detected" and run["succeeded"]
    assert incident["end_s"] < first_failure  # the restart cleared it in time
    assert unanswered(result) == 0 and m["availability"] == 1.0
    # no call failed but the background's 0.1 %
    log = result.logs["api_server"]
    assert primary_errors(result) <= 3 * 0.001 * sum(log.calls) + 5


def test_without_the_memory_signal_the_leak_is_seen_only_in_errors():
    sc = load_scenario(SCENARIOS / "api_memory_leak.yaml")
    [leak] = sc.faults
    no_memory = dataclasses.replace(sc, faults=(dataclasses.replace(
        leak, params={**leak.params, "mem_growth": 0.0}),))
    result = Simulation(no_memory).run()
    assert not [d for d in result.detections if d.signal == "memory_growth"]
    [incident] = run_metrics(result)["incidents"]
    assert incident["detected_s"] > incident["impact_s"] == incident["start_s"]
    with_memory = Simulation(sc).run()
    assert primary_errors(result) > primary_errors(with_memory) + 20  # what the leak cost
