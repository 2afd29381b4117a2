"""Routes and cache warming reach every process through real Redis, and through the
orchestrator's fallback and cache_warm actions."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from actors.cluster_control import (
    PROBES_KEY,
    ROUTES_KEY,
    ClusterProbes,
    ControlBus,
    ControlListener,
    ProbeFailed,
    probe_counts,
)
from actors.runtime import orchestrator
from actors.stores.redis_conn import connect
from healing import (
    ClinicalContext,
    FallbackCache,
    Guard,
    InMemorySink,
    ManualClock,
    RouteTable,
)
from healing.orchestration import TriggerEvent
from healing.workflow import Criterion, RecoveryStep, RecoveryWorkflow, Trigger
from tests.actors.hosts import EPOCH
from tests.conftest import REDIS_URL

DX = ClinicalContext("diagnostic", "high", patient_id="MRN-77")
KEY = b"k" * 32  # the cluster's pseudonym key


class Process:
    """One guarding process: a guard, its cache and routes, and its control listener."""

    def __init__(self, start: float = 0.0) -> None:
        self.clock = ManualClock(start=start, epoch=EPOCH)
        self.cache, self.routes = FallbackCache(key=KEY), RouteTable()
        self.guard = Guard(clock=self.clock, cache=self.cache, routes=self.routes,
                           sink=InMemorySink())
        self.listener = ControlListener(REDIS_URL, self.routes, self.cache, self.clock,
                                       guard=self.guard)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def processes(redis_client):
    redis_client.delete(ROUTES_KEY)
    made: list[Process] = []

    def make(start: float = 0.0) -> Process:
        made.append(Process(start))
        return made[-1]
    yield make
    for p in made:
        p.close()
    redis_client.delete(ROUTES_KEY)


@pytest.fixture
def redis_client():
    c = connect(REDIS_URL)
    yield c
    c.close()


def eventually(fn, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(0.01)
    raise AssertionError("never happened")


def xray_answer():
    return {"findings": ["clear"], "confidence": 0.93}


def test_a_route_reaches_every_process_and_clearing_it_brings_traffic_back(processes,
                                                                           redis_client):
    a, b = processes(), processes()
    bus = ControlBus(redis_client)
    assert bus.set_route("xray_analysis", "degraded_mode", "imaging down") >= 2
    for p in (a, b):
        eventually(lambda p=p: p.routes.get("xray_analysis") is not None)
        assert p.guard.call("xray_analysis", xray_answer, context=DX).tier == "degraded_mode"
    # A process that starts mid-incident obeys the route before its first request.
    late = processes()
    assert late.guard.call("xray_analysis", xray_answer, context=DX).tier == "degraded_mode"
    assert bus.clear_route("xray_analysis")
    for p in (a, b, late):
        eventually(lambda p=p: p.routes.get("xray_analysis") is None)
        assert p.guard.call("xray_analysis", xray_answer, context=DX).tier == "primary"


def test_a_malformed_route_in_redis_is_ignored_not_obeyed(processes, redis_client):
    redis_client.hset(ROUTES_KEY, "xray_analysis", "{not json")
    p = processes()
    assert p.routes.get("xray_analysis") is None
    assert p.guard.call("xray_analysis", xray_answer, context=DX).tier == "primary"


def test_cache_warm_shares_recent_answers_with_their_real_age(processes, redis_client):
    # monotonic clocks differ between processes; the wall clock is what they share
    seen, fresh = processes(start=1000.0), processes(start=50.0)
    seen.guard.call("xray_analysis", xray_answer, context=DX, cache_key="chest-1")
    for p in (seen, fresh):
        p.clock.advance(30)  # the answer is 30 s old when the outage starts
    result = asyncio.run(ControlBus(redis_client).warm_cache("xray_analysis", ttl_s=300,
                                                             timeout_s=5))
    assert result["exported"] >= 2 and result["imported"] >= 2 and result["entries"] == 1
    assert 0 < redis_client.pttl("selfheal:warm:xray_analysis") <= 300_000

    def down():
        raise ConnectionError("imaging AI down")
    fresh.guard.fallbacks.register_provider(
        "xray_analysis", "gemini:flash", lambda: (_ for _ in ()).throw(ConnectionError("no")))
    r = fresh.guard.call("xray_analysis", down, context=DX, cache_key="chest-1")
    assert r.tier == "cached_data" and r.data == xray_answer()
    assert r.staleness_s == pytest.approx(30, abs=0.5) and "30 s ago" in r.warning
    # another patient's request never sees it
    other = ClinicalContext("diagnostic", "high", patient_id="MRN-78")
    r = fresh.guard.call("xray_analysis", down, context=other, cache_key="chest-1")
    assert r.tier != "cached_data"
    # the identifiers never reach Redis in clear
    raw = redis_client.hgetall("selfheal:warm:xray_analysis")
    assert b"MRN-77" not in b"".join(k + v for k, v in raw.items())
    redis_client.delete("selfheal:warm:xray_analysis")


def test_answers_older_than_the_ttl_or_not_plain_json_stay_local(processes, redis_client):
    p = processes()
    redis_client.delete("selfheal:warm:care_locator")
    ctx = ClinicalContext("informational", "low")
    p.cache.put(p.cache.key_for("care_locator", ctx, "old"), {"a": 1}, p.clock.now())
    p.clock.advance(120)
    p.cache.put(p.cache.key_for("care_locator", ctx, "set"), {1, 2}, p.clock.now())
    p.cache.put(p.cache.key_for("care_locator", ctx, "ok"), {"a": 2}, p.clock.now())
    result = asyncio.run(ControlBus(redis_client).warm_cache("care_locator", ttl_s=60,
                                                             timeout_s=5))
    assert result["entries"] == 1
    [field] = redis_client.hkeys("selfheal:warm:care_locator")
    assert b'"ok"' in field
    redis_client.delete("selfheal:warm:care_locator")


def test_a_probe_is_asked_of_the_processes_that_can_reach_the_provider(processes,
                                                                        redis_client):
    processes()  # a process that cannot reach the provider
    reaching = processes()
    asked = []

    def flash_down():
        raise ConnectionError("gemini:flash refused the connection")
    reaching.listener.register_probe("xray_analysis", lambda: asked.append("primary"))
    reaching.listener.register_probe("xray_analysis", flash_down, "gemini:flash")
    bus = ControlBus(redis_client)
    got = asyncio.run(bus.probe("xray_analysis", None, "gemini:pro"))
    assert got["processes"] >= 2 and got["probed"] == 1 and got["answered"] == 1
    assert asked == ["primary"]  # one call, by the one process that can make it
    probes = ClusterProbes(bus, {"xray_analysis": "gemini:pro"})
    # the primary by its own name: the registration for "the primary" answers it
    assert asyncio.run(probes["xray_analysis:gemini:pro"]())["answered"] == 1
    with pytest.raises(ProbeFailed, match=r"1 probe.*gemini:flash.*ConnectionError"):
        asyncio.run(probes["xray_analysis:gemini:flash"]())
    with pytest.raises(ProbeFailed, match="no process has a probe for care_locator's primary"):
        asyncio.run(probes["care_locator"]())
    assert asked == ["primary"] * 2
    # probes given explicitly (a test's, a demo's) come first
    assert ClusterProbes(bus, {}, {"care_locator": lambda: "ok"})["care_locator"]() == "ok"


def test_probe_succeeds_asks_the_service_as_its_callers_see_it(processes, redis_client):
    p = processes()

    def primary_down():
        raise ConnectionError("gemini:pro refused the connection")
    p.listener.register_probe("xray_analysis", primary_down)
    redis_client.delete(PROBES_KEY)
    probes = ClusterProbes(ControlBus(redis_client), {"xray_analysis": "gemini:pro"},
                           contexts={"xray_analysis": ("diagnostic", "high")})
    with pytest.raises(ProbeFailed, match="ConnectionError"):  # the primary itself: down
        asyncio.run(probes["xray_analysis"]())
    # through the process's guard: its fallback answers, as the simulator's criterion sees it
    assert asyncio.run(probes.answering("xray_analysis")())["answered"] == 1
    assert p.guard.breakers.get("xray_analysis", "gemini:pro").metrics().failed == 1
    # counted apart too, so that metric counters reconcile with what callers sent
    assert probe_counts(redis_client, "xray_analysis") == {"total": 1, "fallbacks": 1}


def test_a_probe_through_the_guard_asks_the_alternative_provider_what_it_asks_the_primary(
        processes, redis_client):
    """Issue 16's chaos trail: with the probe's question bound into a closure, the
    alternative provider was called with no question, so the fallback step's own check
    failed while the fallback answered every caller. The question is the probe's ``args``."""
    p = processes()
    asked = []

    def primary_down(question):
        raise ConnectionError(f"gemini:pro refused {question!r}")

    def deepseek(question):
        asked.append(question)
        return {"answer": "ok", "diagnosis": "community-acquired pneumonia",
                "confidence": 0.91}
    p.guard.fallbacks.register_provider("clinical_reasoning", "deepseek", deepseek)
    p.listener.register_probe("clinical_reasoning", primary_down, args=("probe",))
    redis_client.delete(PROBES_KEY)
    probes = ClusterProbes(ControlBus(redis_client), {"clinical_reasoning": "gemini:pro"},
                           contexts={"clinical_reasoning": ("diagnostic", "high")})
    assert asyncio.run(probes.answering("clinical_reasoning")())["answered"] == 1
    assert asked == ["probe"]
    assert probe_counts(redis_client, "clinical_reasoning") == {"total": 1, "fallbacks": 1}
    # past the breaker (a retry step, the switch back), the primary is asked the same
    with pytest.raises(ProbeFailed, match="ConnectionError"):
        asyncio.run(probes["clinical_reasoning"]())


def test_a_hanging_probe_fails_in_its_time_and_holds_up_no_route(processes, redis_client):
    p = processes()
    release = threading.Event()
    p.listener.register_probe("xray_analysis", release.wait)  # a provider that hangs
    try:
        clock = ManualClock()  # the 5 s wait is simulated time
        bus = ControlBus(redis_client, clock=clock)
        with pytest.raises(ProbeFailed, match=r"1 probe.*got no answer: timed out after 5 s"):
            asyncio.run(clock.run(ClusterProbes(bus, {}, timeout_s=5.0)["xray_analysis"]()))
        assert clock.now() >= 5.0
        bus.set_route("xray_analysis", "degraded_mode", "test")
        eventually(lambda: p.routes.get("xray_analysis") is not None)
    finally:
        release.set()


def test_the_orchestrators_retry_step_and_probe_criterion_use_the_processes_probes(
        ray_cluster, processes):
    p = processes()
    answers = iter([ConnectionError("still down"), "pong", "pong"])

    def probe():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a
    p.listener.register_probe("xray_analysis", probe)
    o = orchestrator(f"orch-{uuid.uuid4().hex[:6]}", redis_url=REDIS_URL, cooldown_s=1.0,
                     workflows=[workflow("xray_analysis", RecoveryStep(
                         "retry", {"max_attempts": 3, "base_delay_s": 0.01, "probe": True},
                         (Criterion("probe_succeeds"),), timeout_s=20))])
    try:
        ray_cluster.get(o.trigger.remote(TriggerEvent(Trigger.CIRCUIT_OPEN, "xray_analysis",
                                                      "xray_analysis")))
        assert ray_cluster.get(o.wait_idle.remote(30))
        [run] = ray_cluster.get(o.runs.remote())
        assert run["succeeded"], run
        [done] = [h for h in ray_cluster.get(o.history.remote(run["run_id"]))
                  if h["status"] == "succeeded"]
        assert done["result"]["attempts"] == 2  # failed once, answered once; then the check
    finally:
        ray_cluster.kill(o)


def workflow(service, *steps, trigger=Trigger.CIRCUIT_OPEN, context=DX):
    return RecoveryWorkflow(f"wf-{service}", trigger, service, tuple(steps), (), 30.0, "high",
                            context)


def test_the_orchestrators_tier_and_read_replica_fallbacks_route_every_process(
        ray_cluster, processes, redis_client):
    p = processes()
    imaging = workflow("xray_analysis", RecoveryStep("fallback", {"tier": "degraded_mode"},
                                                     timeout_s=10))
    db = workflow("database", RecoveryStep("fallback", {"read_replica": True}, timeout_s=10),
                  trigger=Trigger.HEALTH_CHECK_FAILED,
                  context=ClinicalContext("administrative", "high"))
    o = orchestrator(f"orch-{uuid.uuid4().hex[:6]}", workflows=[imaging, db],
                     redis_url=REDIS_URL, cooldown_s=1.0)
    try:
        ray_cluster.get(o.trigger.remote(TriggerEvent(Trigger.CIRCUIT_OPEN, "xray_analysis",
                                                      "xray_analysis")))
        ray_cluster.get(o.trigger.remote(TriggerEvent(Trigger.HEALTH_CHECK_FAILED, "database",
                                                      "database")))
        assert ray_cluster.get(o.wait_idle.remote(30))
        assert all(r["succeeded"] for r in ray_cluster.get(o.runs.remote()))
        eventually(lambda: p.routes.get("database") is not None)
        assert p.routes.get("database").tier == "alternative_provider:read_replica"
        assert "wf-database" in p.routes.get("database").reason
        r = p.guard.call("xray_analysis", xray_answer, context=DX)
        assert r.tier == "degraded_mode" and r.data["status"] == "queued_for_manual_review"
    finally:
        ray_cluster.kill(o)


def test_the_orchestrators_cache_warm_fills_every_process(ray_cluster, processes,
                                                         redis_client):
    seen, fresh = processes(), processes()
    seen.guard.call("xray_analysis", xray_answer, context=DX, cache_key="chest-2")
    o = orchestrator(f"orch-{uuid.uuid4().hex[:6]}", redis_url=REDIS_URL, cooldown_s=1.0,
                     workflows=[workflow("xray_analysis",
                                         RecoveryStep("cache_warm", {"ttl_s": 300},
                                                      timeout_s=10))])
    try:
        ray_cluster.get(o.trigger.remote(TriggerEvent(Trigger.CIRCUIT_OPEN, "xray_analysis",
                                                      "xray_analysis")))
        assert ray_cluster.get(o.wait_idle.remote(30))
        [run] = ray_cluster.get(o.runs.remote())
        [done] = [h for h in ray_cluster.get(o.history.remote(run["run_id"]))
                  if h["status"] == "succeeded"]
        assert done["result"]["imported"] >= 2 and done["result"]["entries"] >= 1
        key = fresh.cache.key_for("xray_analysis", DX, "chest-2")
        assert fresh.cache.get(key, fresh.clock.now(), 300).value == xray_answer()
    finally:
        ray_cluster.kill(o)
        redis_client.delete("selfheal:warm:xray_analysis")


def test_a_prescriptive_workflows_cache_warm_is_refused_and_audited(ray_cluster, processes,
                                                                   tmp_path):
    from actors.stores.audit_sql import AuditStore

    audit = {"spool_dir": str(tmp_path / "spool"),
             "database_url": f"sqlite:///{tmp_path / 'audit.db'}"}
    AuditStore(audit["database_url"]).migrate()
    o = orchestrator(f"orch-{uuid.uuid4().hex[:6]}", redis_url=REDIS_URL, cooldown_s=1.0,
                     audit=audit, workflows=[workflow(
                         "pharmaguard", RecoveryStep("cache_warm", {"ttl_s": 300}, timeout_s=10),
                         context=ClinicalContext("prescriptive", "high"))])
    try:
        ray_cluster.get(o.trigger.remote(TriggerEvent(Trigger.CIRCUIT_OPEN, "pharmaguard",
                                                      "pharmaguard")))
        assert ray_cluster.get(o.wait_idle.remote(30))
        [run] = ray_cluster.get(o.runs.remote())
        history = ray_cluster.get(o.history.remote(run["run_id"]))
        assert [(h["action"], h["status"]) for h in history] == [("cache_warm", "refused")]
        assert "cached data" in history[0]["validation"]["reason"]
    finally:
        ray_cluster.kill(o)
