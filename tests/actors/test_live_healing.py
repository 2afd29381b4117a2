"""End to end: a failing Ray Serve deployment healed by the orchestrator, MTTR measured; and
the same leak in the simulator, under the same workflow, decided step for step alike."""

from __future__ import annotations

import dataclasses

from serve.demo_healing import leak_workflow, run_healing
from tests.actors.webhooks import WebhookReceiver
from tests.conftest import REDIS_URL


def test_the_memory_leak_workflow_scales_restarts_and_the_service_answers_again(
        ray_cluster):
    receiver = WebhookReceiver()
    try:
        seen = run_healing(REDIS_URL, f"{receiver.url}/slack", say=print)
    finally:
        receiver.close()
    assert seen["healthy_before"] and seen["failing"] and seen["admission"] == "queued"
    assert seen["idle"] and seen["run"]["succeeded"], seen["run"]
    done = {h["action"]: h for h in seen["history"] if h["status"] == "succeeded"}
    assert done["scale"]["result"]["to"] == 2
    assert done["restart"]["result"]["replaced"] == 2  # every replica there at the time
    assert seen["healthy_after"]  # the service answers again, from fresh replicas
    # The workflow added one replica for good (as the seed's does); the restart's own extra
    # replica is gone again.
    assert seen["replicas_after"] == 2
    [(path, body)] = receiver.received
    assert path == "/slack" and seen["target"].split("/")[0] in body["text"]
    assert 0 < seen["trigger_to_first_action_s"] < seen["mttr_s"]
    # Parity: the simulator, with the same leak and the same workflow, takes the same steps
    # with the same effects and outcomes (scale +1, a graceful restart that cures it).
    sim = simulated_leak(seen["target"])
    [sim_run] = [r for r in sim.run_summaries if r["trigger"] == "error_threshold"][:1]
    assert sim_run["succeeded"] and seen["run"]["succeeded"]

    def decisions(entries):
        return [(e["action"], e["status"], e["rollback"], e["result"]["effects"])
                for e in entries if e["status"] != "started"]
    assert decisions([e for e in sim.steps if e["run"] == sim_run["run_id"]]) == \
        decisions(seen["history"])


def simulated_leak(target):
    from simulation.engine import Simulation
    from simulation.policy import default_policy
    from simulation.scenario import FaultKind, FaultSpec, Scenario, ServiceSpec

    # The live deployment answers every call while it does not leak: no background errors.
    spec = ServiceSpec(target, 20, 0.05, 0.4, 0.0, ("replica",), "administrative", "medium")
    sc = Scenario("leak-parity", 3600, {target: spec},
                  (FaultSpec(target, FaultKind.MEMORY_LEAK, 600, None,
                             params={"growth": 0.05}),), 1)
    policy = dataclasses.replace(default_policy(sc), workflows=(leak_workflow(target),))
    sim = Simulation(sc, policy=policy, predictive=False)
    sim.run()
    return sim
