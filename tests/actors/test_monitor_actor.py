"""The predictive monitor on the real cluster: Redis metric streams in through a consumer
group, an anomaly out to a real orchestrator, which runs the service's workflow."""

from __future__ import annotations

import asyncio
import json
import pickle
import random
import time
import uuid

import pytest

from actors.monitor_actor import PredictiveMonitorActor
from actors.runtime import orchestrator, predictive_monitor
from actors.stores.metric_stream import MetricRecorder
from actors.stores.redis_conn import connect
from healing import ClinicalContext
from healing.clock import ManualClock
from healing.outcome import OutcomeRecord
from healing.safety import Criticality, OperationType
from healing.workflow import RecoveryStep, RecoveryWorkflow, Trigger
from tests.conftest import REDIS_URL

ADMIN = ClinicalContext("administrative", "medium")


def outcome(service, at, ok, latency=0.01):
    return OutcomeRecord(service, "api", ok, latency, None if ok else "MemoryError",
                         "primary" if ok else "none", None, OperationType.ADMINISTRATIVE,
                         Criticality.MEDIUM, at)


def monitor_and_orchestrator(prefix, service, workflow):
    """A real orchestrator with one anomaly workflow for ``service``, and a monitor actor
    (stepped by the test) reading the streams under ``prefix`` and telling it."""
    name = f"orch-{prefix}"
    flow = RecoveryWorkflow(workflow, Trigger.ANOMALY, service, (
        RecoveryStep("retry", {"max_attempts": 1}, timeout_s=5),), (), 10.0, "high", ADMIN)
    orch = orchestrator(name, workflows=[flow], probes={service: lambda: "ok"})
    mon = predictive_monitor(REDIS_URL, f"monitor-{prefix}", name, start=False,
                             prefix=prefix, sample_rate=1.0, settle_s=0.0)
    return orch, mon


def first_runs(ray_cluster, orch, within_s=20.0):
    """The orchestrator's runs, once it has any (an anomaly reaches it asynchronously)."""
    deadline = time.monotonic() + within_s
    while not ray_cluster.get(orch.runs.remote()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return ray_cluster.get(orch.runs.remote())


def test_a_rising_error_rate_in_the_streams_becomes_an_anomaly_workflow(ray_cluster):
    prefix = f"mon{uuid.uuid4().hex[:6]}"
    service = "api_server"
    client = connect(REDIS_URL)
    recorder = MetricRecorder(client, sample_rate=1.0, prefix=prefix, flush_interval_s=60)
    rng = random.Random(5)
    t0 = time.time() - 3600  # an hour of history, then a leak
    for k in range(360):  # 10 s buckets of 20 calls at 0.5 % errors
        for j in range(20):
            recorder.record(outcome(service, t0 + 10 * k + j * 0.5, rng.random() > 0.005))
    leak_at = t0 + 3600
    for k in range(12):  # the rate climbs two points a bucket
        for j in range(20):
            recorder.record(outcome(service, leak_at + 10 * k + j * 0.5,
                                    rng.random() > 0.005 + 0.02 * k))
    recorder.flush()
    orch, mon = monitor_and_orchestrator(prefix, service, "leak-suspected")
    try:
        raised = ray_cluster.get(mon.step.remote(now=leak_at + 130))
        [a] = raised
        assert a["service"] == service and a["feature"] == "error_rate"
        # at 2 requests/s the evidence takes a few buckets to add up: well within two minutes
        assert leak_at < a["at"] <= leak_at + 120
        state = ray_cluster.get(mon.state.remote())
        assert state["events_read"] == 20 * 372
        # the orchestrator heard it and ran the anomaly workflow
        [run] = first_runs(ray_cluster, orch)
        assert run["trigger"] == "anomaly" and "error_rate" in run["detail"]
        # everything was acknowledged: a restarted monitor would not read it again
        pending = client.xpending(f"{prefix}:{service}", "monitor")
        assert pending["pending"] == 0
        assert ray_cluster.get(mon.step.remote(now=leak_at + 140)) == []
    finally:
        for actor in (mon, orch):
            ray_cluster.kill(actor)
        client.delete(f"{prefix}:{service}", f"{prefix}:{service}:count")
        recorder.close()


def test_a_saturating_service_in_the_streams_is_seen_by_its_metrics_together(ray_cluster):
    """Five hours of a service's outcomes in its stream, then twenty minutes in which fewer
    calls are answered, each a little slower, none failing: the monitor actor's multivariate
    rows (error rate, p95, throughput, in-flight) raise ``metrics_together`` to the
    orchestrator, which runs the service's anomaly workflow."""
    prefix = f"sat{uuid.uuid4().hex[:6]}"
    service = "reasoning"
    client = connect(REDIS_URL)
    recorder = MetricRecorder(client, sample_rate=1.0, prefix=prefix, flush_interval_s=60)
    rng = random.Random(5)
    t0 = time.time() // 60 * 60 - 6 * 3600  # on a minute: the same buckets every run
    saturating_at = t0 + 5 * 3600

    def bucket(k, calls, mean):
        for j in range(calls):
            at = t0 + 10 * k + j * 10 / calls
            recorder.record(outcome(service, at, True, max(0.01, rng.gauss(mean, 0.02))))

    for k in range(1800):
        bucket(k, max(1, int(rng.gauss(20, 4))), 0.1)
    for k in range(1800, 1920):
        bucket(k, max(1, int(rng.gauss(15, 4))), 0.115)
    recorder.flush()
    orch, mon = monitor_and_orchestrator(prefix, service, "saturation-suspected")
    try:
        raised = []
        for _ in range(100):  # the stream is read 1,000 entries a step
            raised += ray_cluster.get(mon.step.remote(now=saturating_at + 1200))
            if ray_cluster.get(mon.state.remote())["events_read"] >= \
                    client.xlen(f"{prefix}:{service}") and raised:
                break
        assert [a["feature"] for a in raised] == ["metrics_together"]
        [a] = raised
        assert saturating_at < a["at"] <= saturating_at + 1200
        assert "throughput" in a["detail"] and "in_flight" in a["detail"]
        [run] = first_runs(ray_cluster, orch)
        assert run["trigger"] == "anomaly" and "metrics_together" in run["detail"]
    finally:
        for actor in (mon, orch):
            ray_cluster.kill(actor)
        client.delete(f"{prefix}:{service}", f"{prefix}:{service}:count")
        recorder.close()


def test_malformed_events_in_a_stream_are_skipped_and_counted_not_fatal(ray_cluster):
    prefix = f"bad{uuid.uuid4().hex[:6]}"
    client = connect(REDIS_URL)
    stream = f"{prefix}:svc"
    now = time.time()
    good = [now - 30, 0.1, 1, None, "primary", "api"]
    client.xadd(stream, {"n": 1, "events": "not json"})
    client.xadd(stream, {"n": 6, "events": json.dumps([
        good, [now - 29, "slow", True, None, "primary", "api"], [now - 28, 0.1, "yes", None,
                                                                "primary", "api"],
        [now - 27, -1, True, None, "primary", "api"], ["then", 0.1, True, None, "p", "a"],
        [1, 2, 3]])})
    mon = predictive_monitor(REDIS_URL, f"monitor-{prefix}", None, start=False,
                             prefix=prefix, sample_rate=1.0, settle_s=0.0)
    try:
        assert ray_cluster.get(mon.step.remote(now=now)) == []
        state = ray_cluster.get(mon.state.remote())
        assert state["events_read"] == 6 and state["events_malformed"] == 5
        assert client.xpending(stream, "monitor")["pending"] == 0  # read, and not again
    finally:
        ray_cluster.kill(mon)
        client.delete(stream)


def test_a_saved_state_comes_back_and_one_from_another_version_does_not():
    """The monitor actor's class, built directly on the real Redis: what it learnt comes
    back in a new one; a state pickled by another version of the detectors starts fresh
    rather than failing on its first bucket."""
    key = f"selfheal:test:{uuid.uuid4().hex[:8]}:detectors"
    client = connect(REDIS_URL)
    try:
        first = PredictiveMonitorActor(REDIS_URL, state_key=key, clock=ManualClock(0.0))
        first.monitor.observe("api_server", 0.0, 100.0, 1.0)
        assert asyncio.run(first.save_state())
        again = PredictiveMonitorActor(REDIS_URL, state_key=key, clock=ManualClock(0.0))
        assert "api_server" in again.monitor.services
        old = pickle.loads(client.get(key))
        old.state_version = 1
        client.set(key, pickle.dumps(old))
        fresh = PredictiveMonitorActor(REDIS_URL, state_key=key, clock=ManualClock(0.0))
        assert "api_server" not in fresh.monitor.services
    finally:
        client.delete(key)


def test_the_error_budget_counts_every_request_once_whatever_was_sampled():
    """Plain successes are streamed one in ten (each stands for ten); a fallback's answer and
    an unanswered request are always streamed (each stands for one)."""
    mon = PredictiveMonitorActor(REDIS_URL, None, sample_rate=0.1)
    now = time.time()
    events = [[now - 60 + k, 0.01, 1, None, "primary", "p"] for k in range(9)]  # 90 calls
    events += [[now - 50 + k, 0.02, 1, "ConnectionError", "alternative_provider:b", "p"]
               for k in range(10)]  # answered by a fallback
    events.append([now - 30, 0.5, 0, "ConnectionError", "none", "p"])  # unanswered
    mon._count("svc", {b"events": json.dumps(events).encode()})
    # 1 unanswered of 101 requests, against a budget of 0.1 %
    assert mon.budget.burn("svc", 300.0, now) == pytest.approx(1 / 101 / 0.001)


def test_a_stream_deleted_under_the_monitor_does_not_stop_it_reading_the_others():
    """Found, then deleted (by an operator, a test): reading every stream in one call failed
    on it ever after (NOGROUP), and no service was watched any more."""
    prefix = f"gone{uuid.uuid4().hex[:6]}"
    client = connect(REDIS_URL)
    now = time.time()

    def add(service, k):
        client.xadd(f"{prefix}:{service}", {"n": 1, "events": json.dumps(
            [[now - 30 + k, 0.1, 1, None, "primary", "api"]])})

    mon = PredictiveMonitorActor(REDIS_URL, None, prefix=prefix, sample_rate=1.0,
                                 settle_s=0.0)
    try:
        add("kept", 0)
        add("deleted", 0)
        asyncio.run(mon.step(now=now))
        assert asyncio.run(mon.state())["events_read"] == 2
        client.delete(f"{prefix}:deleted")
        add("kept", 1)
        asyncio.run(mon.step(now=now))
        state = asyncio.run(mon.state())
        assert state["events_read"] == 3 and state["streams"] == [f"{prefix}:kept"]
        add("deleted", 2)  # back again: found again, with a new group
        asyncio.run(mon.step(now=now))
        assert asyncio.run(mon.state())["events_read"] == 4
    finally:
        client.delete(f"{prefix}:kept", f"{prefix}:deleted")


def _leak_hidden_by_retries(retried: str) -> list[dict]:
    """An hour of a healthy service, then two minutes of a provider failing 30 % of its
    attempts, every one of which a retry answers: each request succeeds, and only the
    recorders' counts of retried attempts show the leak. ``retried``: "counted" (flushed with
    the requests), "none" (not counted), or "late" (by a second process whose flushes fail
    until the end, as when its Redis is away: they arrive after their buckets were scored).
    The monitor (its class, on the real Redis) is stepped each bucket, as its loop would;
    returns what it raised."""
    prefix = f"retried{uuid.uuid4().hex[:6]}"
    service = "api_server"
    client = connect(REDIS_URL)
    recorder = MetricRecorder(client, sample_rate=1.0, prefix=prefix, flush_interval_s=0)
    other = MetricRecorder(client, sample_rate=1.0, prefix=prefix, flush_interval_s=0)
    mon = PredictiveMonitorActor(REDIS_URL, None, prefix=prefix, sample_rate=1.0,
                                 settle_s=0.0)
    rng = random.Random(11)
    t0 = 1_700_000_000.0
    raised = []
    try:
        for k in range(360):  # 10 s buckets of 20 calls at 0.5 % errors, none retried
            for j in range(20):
                recorder.record(outcome(service, t0 + 10 * k + j * 0.5, rng.random() > 0.005))
        recorder.flush()
        leak_at = t0 + 3600
        asyncio.run(mon.step(now=leak_at))
        for k in range(12):
            for j in range(20):
                at = leak_at + 10 * k + j * 0.5
                recorder.record(outcome(service, at, True))
                if retried != "none" and rng.random() < 0.3:
                    (other if retried == "late" else recorder).retried(service, at)
            recorder.flush()
            raised += asyncio.run(mon.step(now=leak_at + 10 * (k + 1)))
        other.flush()  # held until now: every one of them in a bucket already scored
        for k in range(12, 15):  # and the provider is well again
            for j in range(20):
                recorder.record(outcome(service, leak_at + 10 * k + j * 0.5, True))
            recorder.flush()
            raised += asyncio.run(mon.step(now=leak_at + 10 * (k + 1)))
        assert not client.exists(f"{prefix}:{service}:retried")  # taken, late or not
        return [{**a, "after_s": a["at"] - leak_at} for a in raised]
    finally:
        client.delete(f"{prefix}:{service}", f"{prefix}:{service}:count")
        recorder.close()
        other.close()


def test_failed_attempts_a_retry_hid_are_evidence_for_the_error_rate_watch():
    seen = _leak_hidden_by_retries("counted")
    assert seen and seen[0]["feature"] == "error_rate"
    assert seen[0]["after_s"] <= 30  # a few buckets of 6 failed attempts in 20
    # the same requests, every one answered, with no failed attempt counted: nothing to see
    assert _leak_hidden_by_retries("none") == []


def test_retried_attempts_that_arrive_after_their_buckets_are_not_one_late_burst():
    # two minutes of them placed at the time they were read would be 70 failures in one
    # bucket of 20 calls; placed in their own seconds, they are late, and dropped as late
    # events are
    assert _leak_hidden_by_retries("late") == []
