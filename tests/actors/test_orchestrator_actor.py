"""The recovery orchestrator on the real cluster: real circuits, real webhooks, real audit."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import text

from actors.alerts import AlertRouter, Endpoint
from actors.runtime import NAMESPACE, circuit_actor, orchestrator
from actors.stores.audit_sql import AuditStore
from actors.stores.audit_trail import AuditTrail
from healing import CircuitConfig, ClinicalContext
from healing.cluster import ClusterPolicy
from healing.orchestration import TriggerEvent
from healing.workflow import FailureAction, RecoveryStep, RecoveryWorkflow, Trigger
from tests.actors.hosts import GuardHost
from tests.actors.webhooks import WebhookReceiver
from tests.conftest import REDIS_URL

ALERT = RecoveryStep("alert", {"severity": "high", "channel": "slack"}, timeout_s=10)


def circuit_for(name):
    import ray

    return ray.get_actor(f"circuit:{name}", namespace=NAMESPACE)


def ok_probe():
    return "ok"


def failing_probe():
    raise ConnectionError("still down")


@pytest.fixture
def setup(ray_cluster, tmp_path):
    receiver = WebhookReceiver()
    service = f"svc{uuid.uuid4().hex[:6]}"
    circuit = f"{service}:gemini:pro"
    cfg = CircuitConfig(window_size=20, minimum_number_of_calls=10)
    cactor = circuit_actor(circuit, cfg, ClusterPolicy(), REDIS_URL)
    host = ray_cluster.remote(num_cpus=0)(GuardHost).remote(
        "host", dict(window_size=20, minimum_number_of_calls=10), {}, REDIS_URL)
    ray_cluster.get(host.attach_provider.remote(service, "gemini:pro"))
    audit = {"spool_dir": str(tmp_path / "spool"),
             "database_url": f"sqlite:///{tmp_path / 'audit.db'}"}
    store = AuditStore(audit["database_url"])
    store.migrate()
    made = []

    def make(*workflows, probes=None):
        o = orchestrator(f"orch-{uuid.uuid4().hex[:6]}", workflows=list(workflows),
                         cooldown_s=300.0, audit=audit,
                         alerts=AlertRouter({"slack": Endpoint("slack", f"{receiver.url}/s")}),
                         circuit_for=circuit_for, probes=probes or {service: ok_probe})
        made.append(o)
        return o

    yield dict(make=make, service=service, circuit=circuit, host=host, receiver=receiver,
               store=store, audit=audit)
    for o in made:
        ray_cluster.kill(o)
    ray_cluster.get(host.close.remote())
    ray_cluster.kill(host)
    ray_cluster.kill(cactor)
    receiver.close()
    store.dispose()


def flow(service, *steps, rollback=(), context=None):
    return RecoveryWorkflow("ai-failure", Trigger.CIRCUIT_OPEN, service, tuple(steps),
                            tuple(rollback), 30.0, "high",
                            context or ClinicalContext("diagnostic", "high"))


def run_and_forget(scenario, prefix):
    """``scenario()`` run to its end, then the state its orchestrators kept under ``prefix``
    deleted from Redis."""
    import asyncio

    import redis

    try:
        return asyncio.run(scenario())
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def wait_until(fn, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.01)
    raise AssertionError("never happened")


def test_a_trigger_moves_traffic_cluster_wide_and_alerts(ray_cluster, setup):
    s = setup
    w = flow(s["service"], RecoveryStep("fallback", {"provider": "deepseek"}, timeout_s=10),
             ALERT)
    o = s["make"](w)
    event = TriggerEvent(Trigger.CIRCUIT_OPEN, s["service"], s["circuit"])
    t0 = time.monotonic()
    assert ray_cluster.get(o.trigger.remote(event)) == "queued"
    assert ray_cluster.get(o.trigger.remote(event)) == "coalesced"  # already being healed
    trigger_to_return = time.monotonic() - t0
    assert ray_cluster.get(o.wait_idle.remote(30))
    [run] = ray_cluster.get(o.runs.remote())
    assert run["succeeded"] and run["ended"] == "completed"
    history = ray_cluster.get(o.history.remote(run["run_id"]))
    # each step's outcome is written as soon as it is known, before the next step starts
    assert [(h["action"], h["status"]) for h in history] == [
        ("fallback", "started"), ("fallback", "succeeded"),
        ("alert", "started"), ("alert", "succeeded")]
    # Every process's guard now skips the failed provider: the cluster forced it open.
    wait_until(lambda: ray_cluster.get(s["host"].state_of.remote(s["service"], "gemini:pro"))
               == "OPEN")
    [(path, body)] = s["receiver"].received
    assert path == "/s" and s["service"] in body["text"]
    assert ray_cluster.get(o.active_alerts.remote())[0]["service"] == s["service"]
    assert ray_cluster.get(o.trigger.remote(event)) == "cooling_down"
    # a different alarm is heard during that cool-down (this service has no workflow for it)
    assert ray_cluster.get(o.trigger.remote(TriggerEvent(
        Trigger.HEALTH_CHECK_FAILED, s["service"]))) == "no_workflow"
    assert trigger_to_return < 5.0  # two round trips; triggering never waits for the work


def test_a_failed_step_rolls_back_and_puts_traffic_back(ray_cluster, setup):
    s = setup
    w = flow(s["service"], RecoveryStep("fallback", {"provider": "deepseek"}, timeout_s=10),
             RecoveryStep("retry", {"max_attempts": 2, "base_delay_s": 0.01},
                          failure_action=FailureAction.ROLLBACK, timeout_s=10),
             rollback=(RecoveryStep("fallback", {"provider": "primary"}, timeout_s=10),))
    o = s["make"](w, probes={s["service"]: failing_probe})
    ray_cluster.get(o.trigger.remote(TriggerEvent(Trigger.CIRCUIT_OPEN, s["service"],
                                                  s["circuit"])))
    assert ray_cluster.get(o.wait_idle.remote(30))
    [run] = ray_cluster.get(o.runs.remote())
    assert run["ended"] == "rolled_back" and not run["succeeded"]
    final = [(h["action"], h["status"], h["rollback"])
             for h in ray_cluster.get(o.history.remote(run["run_id"]))
             if h["status"] != "started"]
    assert final == [("fallback", "succeeded", False), ("retry", "failed", False),
                     ("fallback", "rolled_back", True)]
    view = ray_cluster.get(circuit_for(s["circuit"]).view.remote())
    assert view["state"] == "closed" and "rolled back" in view["reason"]


def test_a_refused_step_is_audited_with_its_reason(ray_cluster, setup):
    s = setup
    w = flow(s["service"], RecoveryStep("fallback", {"provider": "deepseek"}, timeout_s=10),
             ALERT, context=ClinicalContext("diagnostic", "life_critical"))
    o = s["make"](w)
    ray_cluster.get(o.trigger.remote(TriggerEvent(Trigger.CIRCUIT_OPEN, s["service"],
                                                  s["circuit"])))
    assert ray_cluster.get(o.wait_idle.remote(30))
    view = ray_cluster.get(circuit_for(s["circuit"]).view.remote())
    assert view["state"] == "closed"  # the refused fallback never touched the circuit
    trail = AuditTrail(s["audit"]["spool_dir"], s["store"], None, flush_interval_s=0)
    wait_until(lambda: trail.flush() >= 0 and _steps(s["store"]) and
               ("fallback", "refused") in _steps(s["store"]))
    trail.close()
    with s["store"].engine.connect() as conn:
        validation = conn.execute(text("select validation from recovery_steps "
                                       "where status='refused'")).scalar_one()
    import json

    v = validation if isinstance(validation, dict) else json.loads(validation)
    assert v["rule"] == "rule_2_no_fallback_for_life_critical" and not v["allowed"]
    assert ("alert", "succeeded") in _steps(s["store"])


def _steps(store):
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("select action, status from recovery_steps"))]


def test_a_circuit_opening_and_a_check_going_unhealthy_start_their_workflows(ray_cluster,
                                                                             setup):
    from actors.health_checks import CheckSpec
    from actors.runtime import health_monitor
    from healing.cluster import ClusterPolicy as Policy

    s = setup
    name = f"orch-{uuid.uuid4().hex[:6]}"
    db_flow = RecoveryWorkflow("db-lost", Trigger.HEALTH_CHECK_FAILED, "database", (ALERT,),
                               (), 30.0, "critical", ClinicalContext("administrative", "high"))
    o = orchestrator(name, workflows=[flow(s["service"], ALERT), db_flow], cooldown_s=300.0,
                     alerts=AlertRouter({"slack": Endpoint("slack", f"{s['receiver'].url}/s")}))
    ray_cluster.get(o.ping.remote())
    circuit = f"{s['service']}:deepseek"
    c = circuit_actor(circuit, CircuitConfig(window_size=20, minimum_number_of_calls=10),
                      Policy(), REDIS_URL, None, name)
    ray_cluster.get(c.report.remote("lone", [(1.0, 1, False)] * 12, 1.0))  # it opens
    monitor = health_monitor(f"h-{uuid.uuid4().hex[:6]}", orchestrator=name)
    ray_cluster.get(monitor.register.remote(
        CheckSpec("db", "tcp", "127.0.0.1:9", {"fall": 1}, service="database"), start=False))
    ray_cluster.get(monitor.run_once.remote("db"))
    wait_until(lambda: len(ray_cluster.get(o.runs.remote())) == 2)
    assert ray_cluster.get(o.wait_idle.remote(30))
    runs = {r["service"]: r for r in ray_cluster.get(o.runs.remote())}
    assert runs[s["service"]]["trigger"] == "circuit_open"
    assert runs[s["service"]]["detail"] == circuit and runs[s["service"]]["succeeded"]
    assert runs["database"]["trigger"] == "health_check_failed" and runs["database"]["succeeded"]
    for actor in (o, c, monitor):
        ray_cluster.kill(actor)


def test_traffic_switches_back_when_the_primary_answers_again(ray_cluster, setup):
    s = setup
    w = flow(s["service"], RecoveryStep("fallback", {"provider": "deepseek", "recheck_s": 0.05},
                                        timeout_s=10))
    o = s["make"](w, probes={s["service"]: ok_probe, s["circuit"]: ok_probe})
    ray_cluster.get(o.trigger.remote(TriggerEvent(Trigger.CIRCUIT_OPEN, s["service"],
                                                  s["circuit"])))
    assert ray_cluster.get(o.wait_idle.remote(30))
    [run] = ray_cluster.get(o.runs.remote())
    [done] = [h for h in ray_cluster.get(o.history.remote(run["run_id"]))
              if h["status"] == "succeeded"]
    assert done["result"]["switches_back"]
    wait_until(lambda: "primary recovered" in
               ray_cluster.get(circuit_for(s["circuit"]).view.remote())["reason"])
    assert ray_cluster.get(circuit_for(s["circuit"]).view.remote())["state"] == "closed"


def test_every_step_and_run_is_counted_in_redis(ray_cluster, setup):
    from actors.stores.redis_conn import connect

    s = setup
    name = f"orch-{uuid.uuid4().hex[:6]}"
    o = orchestrator(name, workflows=[flow(s["service"], ALERT)], redis_url=REDIS_URL,
                     alerts=AlertRouter({"slack": Endpoint("slack", f"{s['receiver'].url}/s")}))
    ray_cluster.get(o.trigger.remote(TriggerEvent(Trigger.CIRCUIT_OPEN, s["service"], "")))
    assert ray_cluster.get(o.wait_idle.remote(30))
    client = connect(REDIS_URL)
    counts = {k.decode(): int(v) for k, v in client.hgetall(f"recovery:{s['service']}").items()}
    client.delete(f"recovery:{s['service']}")
    ray_cluster.kill(o)
    # the trigger itself is counted too: /metrics reports it as a detection
    assert counts == {"triggers:circuit_open": 1, "alert:succeeded": 1, "runs:completed": 1}


def test_error_rate_criterion_reads_the_metric_stream_reweighting_the_sample(ray_cluster):
    from actors.recovery_actions import LiveEvidence
    from actors.stores.metric_stream import MetricRecorder
    from actors.stores.redis_conn import connect
    from healing import Criticality, OperationType
    from healing.outcome import OutcomeRecord
    from healing.recovery import error_rate_below
    from healing.workflow import Criterion

    service, other = f"svc{uuid.uuid4().hex[:6]}", f"svc{uuid.uuid4().hex[:6]}"
    client = connect(REDIS_URL)
    rec = MetricRecorder(client, sample_rate=0.5, flush_interval_s=0,
                         rng=__import__("random").Random(1))
    now = time.time()
    for i in range(400):
        ok = i % 10 != 0  # 10 % errors
        rec.record(OutcomeRecord(service, None, ok, 0.01, None if ok else "Timeout", "primary",
                                 None, OperationType.DIAGNOSTIC, Criticality.HIGH, now - 5))
    rec.flush()
    try:
        world = LiveEvidence({}.get, redis_url=REDIS_URL, sample_rate=0.5)
        errors, calls = world.counts(service, 60, now)
        assert errors / calls == pytest.approx(0.10, abs=0.03)  # not the 18 % of the sample
        import asyncio

        assert asyncio.run(world.holds(Criterion("error_rate_below",
                                                 {"threshold": 0.2, "window_s": 60}), service))
        assert not asyncio.run(world.holds(Criterion("error_rate_below",
                                                     {"threshold": 0.05, "window_s": 60}),
                                           service))
        assert world.counts(service, 1, now) == (0, 0)  # nothing that recent: no evidence
        assert not error_rate_below(0, 0, 0.5)  # and no evidence is not health
        # the watch reads the stream from its window's start only (entry ids are their
        # newest event's time): errors just inside the window count, older ones do not
        for at, n in ((now - 120, 50), (now - 59, 20), (now - 5, 10)):
            for _ in range(n):
                rec.record(OutcomeRecord(other, None, False, 0.01, "Timeout", "primary",
                                         None, OperationType.DIAGNOSTIC, Criticality.HIGH, at))
            rec.flush()  # each in an entry of its own, in time order
        assert world.counts(other, 60, now) == (30, 30)
        assert world.windows(other, (10, 130), now) == [(10, 10), (80, 80)]
    finally:
        for key in [*client.scan_iter(f"metrics:{service}*"),
                    *client.scan_iter(f"metrics:{other}*")]:
            client.delete(key)


def test_an_error_rate_over_threshold_in_the_metric_stream_starts_the_workflow(ray_cluster,
                                                                               setup):
    from actors.stores.metric_stream import MetricRecorder
    from actors.stores.redis_conn import connect
    from healing import Criticality, OperationType
    from healing.outcome import OutcomeRecord

    s = setup
    service = s["service"]
    leak = RecoveryWorkflow("leak", Trigger.ERROR_THRESHOLD, service, (ALERT,), (), 30.0,
                            "high", ClinicalContext("administrative", "medium"))
    o = orchestrator(f"orch-{uuid.uuid4().hex[:6]}", workflows=[leak], redis_url=REDIS_URL,
                     sample_rate=1.0, error_thresholds={service: (0.25, 60.0)},
                     alerts=AlertRouter({"slack": Endpoint("slack", f"{s['receiver'].url}/s")}))
    client = connect(REDIS_URL)
    rec = MetricRecorder(client, sample_rate=1.0, flush_interval_s=0)
    now = time.time()

    def traffic(n_ok, n_err):
        for i in range(n_ok + n_err):
            ok = i >= n_err
            rec.record(OutcomeRecord(service, None, ok, 0.01, None if ok else "MemoryError",
                                     "primary", None, OperationType.ADMINISTRATIVE,
                                     Criticality.MEDIUM, now - 1))
        rec.flush()

    try:
        traffic(90, 10)  # 10 %: under the threshold
        assert ray_cluster.get(o.check_error_thresholds.remote(now)) == {}
        traffic(20, 60)  # now 70 of 180: 39 %
        assert ray_cluster.get(o.check_error_thresholds.remote(now)) == {service: "queued"}
        assert ray_cluster.get(o.wait_idle.remote(30))
        [run] = ray_cluster.get(o.runs.remote())
        assert run["trigger"] == "error_threshold" and "39%" in run["detail"]
    finally:
        ray_cluster.kill(o)
        for key in client.scan_iter(f"metrics:{service}*"):
            client.delete(key)
        client.delete(f"recovery:{service}")


def test_a_fresh_orchestrator_watches_the_error_rates_without_being_asked(ray_cluster, setup):
    """Watching starts with the actor, not with its first trigger; what it detects is kept
    with its time (GET /api/v1/detections reads it)."""
    from actors.stores.actor_state import ActorState
    from actors.stores.metric_stream import MetricRecorder
    from actors.stores.redis_conn import connect
    from healing import Criticality, OperationType
    from healing.outcome import OutcomeRecord

    service = setup["service"]
    client = connect(REDIS_URL)
    prefix = f"selfheal:orch-{uuid.uuid4().hex[:6]}"
    o = orchestrator(prefix.split(":")[1], redis_url=REDIS_URL, sample_rate=1.0,
                     error_thresholds={service: (0.25, 60.0)}, watch_interval_s=0.2,
                     state_prefix=prefix)
    state = ActorState(client, prefix)
    try:
        # The watch's first round, with nothing called on the actor: it watches from its
        # start. The errors are written after it, so that they are inside the rule's recent
        # part (10 s) however long the actor took to start (13 s once in CI).
        wait_until(lambda: state.items("watch"), timeout_s=60)
        rec = MetricRecorder(client, sample_rate=1.0, flush_interval_s=0)
        for i in range(100):  # 60 % errors, just now, sent at once
            ok = i >= 60
            rec.record(OutcomeRecord(service, None, ok, 0.01, None if ok else "MemoryError",
                                     "primary", None, OperationType.ADMINISTRATIVE,
                                     Criticality.MEDIUM, time.time()))
        rec.flush()
        deadline = time.monotonic() + 30  # the actor's own watch, on its own clock
        found, fired = [], []
        while not (found and fired) and time.monotonic() < deadline:
            found = state.items("detections")
            # and each round of the watch with what it read (GET /api/v1/watch), written
            # once the round is over
            fired = [r for r in state.items("watch")
                     if r["services"][service]["admitted"] is not None]
        assert found and found[0]["service"] == service
        assert found[0]["trigger"] == "error_threshold" and found[0]["at"] > 0
        assert fired and fired[0]["at"] <= found[0]["at"] and fired[0]["took_s"] >= 0
        assert fired[0]["services"][service] == {
            "errors": 60, "calls": 100, "recent_errors": 60, "recent_calls": 100,
            "admitted": found[0]["admitted"]}
    finally:
        ray_cluster.kill(o)
        for key in client.scan_iter(f"metrics:{service}*"):
            client.delete(key)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.delete(f"recovery:{service}")


def test_a_run_cut_short_by_a_restart_comes_back_interrupted_with_its_steps():
    """The orchestrator dies while a step runs: its successor (built from the same
    arguments, as Ray rebuilds it) lists the run, its steps so far, and why it ended."""
    import asyncio
    import dataclasses

    from actors.orchestrator_actor import RecoveryOrchestratorActor
    from actors.recovery_actions import ActionRegistry

    prefix = f"selfheal:test-orch-{uuid.uuid4().hex[:8]}"
    release = asyncio.Event()
    started = asyncio.Event()

    async def first(ctx):
        return "done"

    async def hang(ctx):  # the step that is running when the actor dies
        started.set()
        await release.wait()

    actions = ActionRegistry()
    actions.register("alert", first)
    actions.register("restart", hang)
    workflow = dataclasses.replace(
        flow("drill", RecoveryStep("alert", {"severity": "high", "channel": "slack"},
                                   timeout_s=5),
             RecoveryStep("restart", {"graceful": True}, timeout_s=20)),
        trigger=Trigger.MANUAL)

    async def scenario():
        a = RecoveryOrchestratorActor([workflow], actions=actions, redis_url=REDIS_URL,
                                      state_prefix=prefix)
        await a.trigger(TriggerEvent(Trigger.MANUAL, "drill", "operator"))
        await asyncio.wait_for(started.wait(), 10)
        before = await a.runs()
        for task in list(a._tasks):  # the process dies: nothing after this point runs
            task.cancel()
        b = RecoveryOrchestratorActor([workflow], actions=actions, redis_url=REDIS_URL,
                                      state_prefix=prefix)
        return before, await b.runs(), await b.history(before[0]["run_id"])

    before, after, steps = run_and_forget(scenario, prefix)
    assert len(before) == 1 and "ended" not in before[0]
    [run] = after
    assert run["run_id"] == before[0]["run_id"] and run["succeeded"] is False
    assert run["ended"] == "interrupted: the orchestrator restarted"
    assert [(s["action"], s["status"]) for s in steps] == [
        ("alert", "started"), ("alert", "succeeded"), ("restart", "started")]


def test_a_restarted_orchestrator_keeps_its_cool_downs():
    """Ray rebuilds a killed orchestrator from the same arguments: the successor holds back
    the same alarm for what is left of the cool-down of a run that finished before (the
    chaos suite kills it during outages), hears a different alarm, and forgets the
    cool-down once it is over. A run the restart cut short leaves none: its alarm is heard
    again, so that the recovery it did not finish runs."""
    import asyncio
    import dataclasses

    from actors.orchestrator_actor import RecoveryOrchestratorActor
    from actors.recovery_actions import ActionRegistry
    from healing import ManualClock

    prefix = f"selfheal:test-orch-{uuid.uuid4().hex[:8]}"
    release = asyncio.Event()

    async def done(ctx):
        return "done"

    async def hang(ctx):
        await release.wait()

    actions = ActionRegistry()
    actions.register("alert", done)
    actions.register("restart", hang)
    on_errors = dataclasses.replace(flow("drill", ALERT), trigger=Trigger.ERROR_THRESHOLD)
    on_open = flow("drill", ALERT)
    stuck = dataclasses.replace(flow("stuck", RecoveryStep("restart", {}, timeout_s=20)),
                                trigger=Trigger.ERROR_THRESHOLD)
    clock = ManualClock(start=1000.0)

    def successor():  # as Ray rebuilds it: same arguments, same Redis state
        return RecoveryOrchestratorActor([on_errors, on_open, stuck], actions=actions,
                                         redis_url=REDIS_URL, state_prefix=prefix,
                                         cooldown_s=120.0, clock=clock)

    errors = TriggerEvent(Trigger.ERROR_THRESHOLD, "drill", "error rate 40%")
    anomaly = TriggerEvent(Trigger.ANOMALY, "drill", "one alarm with errors")

    async def scenario():
        a = successor()
        assert await a.trigger(errors) == "queued"
        assert await a.wait_idle(10)
        assert await a.trigger(TriggerEvent(Trigger.ERROR_THRESHOLD, "stuck")) == "queued"
        await asyncio.sleep(0)  # the stuck run starts, and is running when the actor dies
        for task in list(a._tasks):
            task.cancel()
        clock.advance(30.0)
        b = successor()
        answers = [await b.trigger(errors), await b.trigger(anomaly),
                   await b.trigger(TriggerEvent(Trigger.ERROR_THRESHOLD, "stuck"))]
        for task in list(b._tasks):
            task.cancel()
        clock.advance(91.0)  # 121 s after the first run ended: its cool-down is over
        c = successor()
        later = await c.trigger(errors)
        different = TriggerEvent(Trigger.CIRCUIT_OPEN, "drill")
        return answers, later, await b.trigger(different)

    answers, later, different = run_and_forget(scenario, prefix)
    assert answers == ["cooling_down", "cooling_down", "queued"]
    assert later == "queued"
    assert different == "queued"
