"""The short chaos suite, as ``make test`` runs it: selfheal up on real Ray, Serve, Redis and
PostgreSQL, under open-loop clinical load, while a provider fails, the orchestrator is
killed, Redis stops and the metric buffers fill, PostgreSQL stops, the API is flooded and a
prescriptive provider fails, overlapping. Nothing may be lost and no safety rule broken;
the counters, the audit trail and the recovery steps must reconcile exactly with what the
generator sent and got."""

from __future__ import annotations

import pytest

from serve.chaos.experiment import counters, run_experiment
from serve.chaos.ledger import Entry
from serve.chaos.prediction import predict
from serve.chaos.stack import ChaosStack
from serve.chaos.suite import short_suite

RATE = 40.0  # requests/s: well inside what two cores sustain (make chaos measures it)


@pytest.fixture(scope="module")
def stack(ray_cluster, tmp_path_factory):
    s = ChaosStack(tmp_path_factory.mktemp("chaos"))
    try:
        yield s.start()
    finally:
        s.close()


def test_overlapping_faults_under_load_lose_nothing_and_break_no_safety_rule(stack, tmp_path):
    [exp] = short_suite(RATE)
    r = run_experiment(stack, exp)
    assert "skipped" not in r, r
    assert r["fault_errors"] == [] and all(r["steady_state_after"].values()), r
    assert r["violations"] == {} and r["lost"] == 0 and r["safety_violations"] == 0
    load = r["load"]
    # the open loop really sent its schedule, and the faults were felt
    assert load["sent"] >= 0.9 * RATE * exp.duration_s
    assert load["by_outcome"].get("fallback", 0) > 0 and load["by_outcome"].get("explicit", 0) > 0
    assert r["audit"]["expected"] > 0 and r["audit"]["found"] == r["audit"]["expected"]
    assert r["steps"]["runs"] >= 1 and r["steps"]["expected"] > 0 and r["steps"]["lost"] == 0
    for service, c in r["counters"].items():
        assert c["counted"] == c["sent"] and c["fallbacks_counted"] == c["fallbacks"], service
    assert r["audit_intact"] is True
    # both provider faults were detected, and the simulator predicted the same faults
    assert [t["service"] for t in r["timings"]] == ["clinical_reasoning", "pharmaguard"]
    assert all(t["mttd_s"] is not None and t["mttd_s"] < 30 for t in r["timings"])
    # the workflows' alert steps reached the on-call channel (a webhook on loopback)
    assert r["alerts_delivered"] >= 1
    # the outage's trail, from the audit trail: its circuit opened
    assert any("-> OPEN" in line for line in r["timings"][0]["trail"]), r["timings"][0]
    prediction = predict(exp, stack.catalogue, r["duration_s"], tmp_path)
    assert prediction is not None and (tmp_path / prediction["scenario"]).exists()
    assert {i["service"] for i in prediction["incidents"]} == {"clinical_reasoning",
                                                               "pharmaguard"}


def test_the_counters_include_calls_just_completed_and_not_yet_flushed(stack):
    # The first experiment of `make chaos` once counted six requests more than it sent: the
    # last calls of the load ramp completed just before its "before" snapshot and reached
    # Redis with the next flush (every 0.2 s), after it. The snapshot pushes them first.
    before = counters(stack)
    for i in range(30):
        stack.send(Entry(i, "xray_analysis", "diagnostic", "high", f"patient-{i}", 0.0))
    after = counters(stack)  # read at once: no background flush has run yet
    assert after["xray_analysis"]["total"] - before["xray_analysis"]["total"] == 30
