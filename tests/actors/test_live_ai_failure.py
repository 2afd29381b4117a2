"""End to end on real Ray Serve: the AI provider fails, the shipped ai-service-failure workflow
moves every process's traffic to the alternative provider, and back when the primary answers.
The same fault, replayed in the simulator with the same workflow, strategy and policy, takes
the same decisions: the same trigger, the same steps with the same effects and outcomes."""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid

import ray
from ray import serve

from actors.alerts import AlertRouter, Endpoint
from actors.process import GuardProcess
from actors.runtime import NAMESPACE, orchestrator
from actors.settings import Settings
from actors.stores.audit_sql import AuditStore
from actors.stores.redis_conn import connect
from healing import CircuitConfig, ClinicalContext
from healing.workflow_files import load_workflows
from serve.demo_service import build
from tests.actors.fake_provider import FakeProvider
from tests.actors.fake_provider import ask as ask_provider
from tests.actors.webhooks import WebhookReceiver
from tests.conftest import REDIS_URL

PRIMARY = "gemini:pro"
DX = ClinicalContext("diagnostic", "high", patient_id="MRN-31337")


def shipped_ai_failure_workflow(service):
    """The shipped workflow, for a service of this test's own (circuit actors are named by
    service, and the cluster is shared with other tests)."""
    [w] = [w for w in load_workflows() if w.id == "ai-service-failure"]
    # Re-check the primary every 0.2 s rather than every 10 s: this is a test, not a ward.
    fb = w.steps[0]
    steps = (dataclasses.replace(fb, config={**fb.config, "recheck_s": 0.2}), *w.steps[1:])
    return dataclasses.replace(w, steps=steps, service=service)


def one_policy(service):
    """The policy both worlds run on: the shipped workflow and strategy for this test's
    service, the test's quick breaker, a short cool-down; and the scenario of its fault (the
    primary down for two minutes, then back)."""
    from healing.strategies import default_strategies
    from simulation.policy import default_policy
    from simulation.scenario import FaultKind, FaultSpec, Scenario, ServiceSpec

    spec = ServiceSpec(service, 10, 0.8, 3.0, 0.0, (PRIMARY, "deepseek"), "diagnostic", "high")
    sc = Scenario("parity", 600, {service: spec},
                  (FaultSpec(service, FaultKind.OUTAGE, 120, 120, PRIMARY),), 1)
    [shipped] = [s for s in default_strategies() if s.service == "clinical_reasoning"]
    policy = dataclasses.replace(
        default_policy(sc), workflows=(shipped_ai_failure_workflow(service),),
        strategies=(dataclasses.replace(shipped, service=service),), cooldown_s=1.0,
        circuit=CircuitConfig(window_size=10, minimum_number_of_calls=5, wait_in_open_s=60.0))
    return policy, sc


def simulated_twin(policy, sc):
    from simulation.engine import Simulation

    sim = Simulation(sc, policy=policy, predictive=False)
    return sim, sim.run()


def decisions(entries):
    """What a run decided, step by step: action, outcome, rollback, and the effects applied."""
    return [(e["action"], e["status"], e["rollback"], e["result"]["effects"])
            for e in entries if e["status"] != "started"]


def until(fn, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if fn():
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError("never happened")


def test_a_failing_serve_provider_is_routed_around_cluster_wide_and_back(ray_cluster,
                                                                         tmp_path):
    app = f"ai{uuid.uuid4().hex[:6]}"
    service = f"clinical_reasoning_{app}"
    circuit = f"{service}:{PRIMARY}"
    switch = f"selfheal:fault:{app}"
    redis = connect(REDIS_URL)
    deepseek = FakeProvider({"diagnosis": "pneumonia", "confidence": 0.86})
    receiver = WebhookReceiver()
    settings = Settings(redis_url=REDIS_URL, data_dir=tmp_path)
    AuditStore(settings.audit_database_url()).migrate()
    handle = serve.run(build(REDIS_URL, switch), name=app, route_prefix=None)

    def gemini(question):
        return handle.remote(question).result(timeout_s=10)

    orch_name = f"orch-{app}"
    policy, scenario = one_policy(service)  # one object for both worlds
    orch = orchestrator(
        orch_name, policy=policy, redis_url=REDIS_URL,
        alerts=AlertRouter({"slack": Endpoint("slack", f"{receiver.url}/slack")}),
        circuit_for=lambda name: ray.get_actor(f"circuit:{name}", namespace=NAMESPACE),
        probes={service: functools.partial(ask_provider, deepseek.url, "probe")})
    procs = [GuardProcess(settings, process_id=f"replica-{i}", orchestrator=orch_name,
                          circuit=policy.circuit)
             for i in range(3)]
    try:
        for p in procs:
            # the policy's strategy: the shipped one, under this test's service name
            [strategy] = policy.strategies
            p.guard.fallbacks.register(strategy)
            p.share(service, PRIMARY)
            p.guard.fallbacks.register_provider(service, "deepseek", deepseek.ask)
        # One process can reach the primary for a probe (as in production, the orchestrator
        # asks the processes: it holds no provider client); the switch back depends on it.
        procs[1].register_probe(service, lambda: handle.remote("probe").result(timeout_s=5),
                                provider=PRIMARY)

        def ask(p, n=1):
            return [p.guard.call(service, gemini, "fever?", context=DX, provider=PRIMARY,
                                 cache_key="fever?").tier for _ in range(n)]

        assert [t for p in procs for t in ask(p, 2)] == ["primary"] * 6
        fault_at = time.monotonic()
        redis.set(switch, "fail")
        # Two replicas see the failures (a quorum: one sick process alone would be isolated,
        # not believed); every request is still answered, by deepseek.
        tiers = ask(procs[0], 8) + ask(procs[1], 8)
        assert set(tiers) == {"alternative_provider:deepseek"}, tiers
        # Their circuits open, the cluster's circuit opens, the orchestrator runs the
        # workflow, and replica-2, which never saw a failure, stops calling the primary too.
        moved_at = until(lambda: procs[2].breakers.get(service, PRIMARY).state.name
                         in ("OPEN", "FORCED_OPEN"))
        # the circuit actor tells the orchestrator on its own time: wait for the run to end
        until(lambda: any("ended" in r for r in ray.get(orch.runs.remote())))
        [run] = ray.get(orch.runs.remote())
        steps = {h["action"]: h for h in ray.get(orch.history.remote(run["run_id"]))
                 if h["status"] != "started"}
        assert steps["fallback"]["status"] == "succeeded"
        assert steps["fallback"]["result"]["switches_back"]
        assert steps["cache_warm"]["status"] == "succeeded"
        assert steps["cache_warm"]["result"]["entries"] >= 1  # the answers seen before
        assert steps["alert"]["status"] == "succeeded"
        assert ask(procs[2], 3) == ["alternative_provider:deepseek"] * 3
        [(path, body)] = receiver.received
        assert path == "/slack" and service in body["text"] and "MRN" not in str(body)
        # The primary recovers: the switch-back probe resets the circuit everywhere.
        redis.set(switch, "ok")
        back_at = until(lambda: all(p.breakers.get(service, PRIMARY).state.name == "CLOSED"
                                    for p in procs))
        assert [t for p in procs for t in ask(p, 2)] == ["primary"] * 6
        # A hung primary is a failure too: the caller's own timeout ends the call and the
        # guard answers from deepseek.
        redis.set(switch, "hang")
        r = procs[0].guard.call(service, lambda q: handle.remote(q).result(timeout_s=0.5),
                                "fever?", context=DX, provider=PRIMARY)
        assert r.tier == "alternative_provider:deepseek"
        assert procs[0].breakers.get(service, PRIMARY).metrics().failed >= 1
        # Parity: the simulator, given the same fault and the same policy object, decides
        # exactly as the live run did.
        sim, result = simulated_twin(policy, scenario)
        [sim_run] = [r for r in sim.run_summaries if r["trigger"] == "circuit_open"][:1]
        assert (sim_run["trigger"], sim_run["succeeded"], sim_run["ended"]) == \
            (run["trigger"], run["succeeded"], run["ended"])
        live = decisions(ray.get(orch.history.remote(run["run_id"])))
        simulated = decisions([e for e in sim.steps if e["run"] == sim_run["run_id"]])
        assert simulated == live, (simulated, live)
        assert [e["effect"] for _, _, _, effects in live for e in effects] == \
            ["SetCircuit", "SwitchBack", "WarmCache", "SendAlert"]
        # and, in both, every request was answered, and the switch-back put the primary's
        # circuit back once it answered again
        from simulation.metrics import run_metrics

        assert run_metrics(result)["availability"] == 1.0
        assert sim.breakers.get(service, PRIMARY).state.name == "CLOSED"
        print(f"\nfault → traffic moved cluster-wide {moved_at - fault_at:.2f} s; "
              f"every request answered throughout; primary back → traffic back "
              f"{back_at - fault_at:.2f} s after the fault")
    finally:
        for p in procs:
            p.close()
        ray.kill(orch)
        ray.kill(ray.get_actor(f"circuit:{circuit}", namespace=NAMESPACE))
        redis.delete(f"circuit:{circuit}", f"recovery:{service}", f"selfheal:warm:{service}")
        serve.delete(app)
        redis.delete(switch)
        deepseek.close()
        receiver.close()
