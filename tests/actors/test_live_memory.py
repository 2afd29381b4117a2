"""A live leak healed before it fails a request: a real Serve replica keeps what each call
allocates; the real predictive monitor reads its resident memory (Ray's actor table for the
process, the operating system for its memory), forecasts the climb to the limit and raises
``memory_growth``; the real orchestrator restarts the deployment gracefully; not one call
fails. The monitor is told the time of each reading: ten seconds of simulated time pass
between readings, nothing waits for them."""

from __future__ import annotations

import json
import time
import uuid

import ray

from actors.resource_signals import ProcessReader
from actors.runtime import orchestrator, predictive_monitor
from actors.serve_control import delete_app, run_app
from actors.stores.redis_conn import connect
from healing import ClinicalContext
from healing.workflow import RecoveryStep, RecoveryWorkflow, Trigger
from tests.actors.serve_app import build_leaky
from tests.conftest import REDIS_URL

MB_PER_READING = 10  # 60 MB a simulated minute


def answered(handle, mb):
    try:
        return handle.remote(mb).result(timeout_s=30) == "ok"
    except Exception:  # a call that failed, whatever the reason: what the test counts
        return False


def test_a_leaking_replica_is_restarted_before_any_request_fails(ray_cluster):
    uid = uuid.uuid4().hex[:6]
    app = f"leaky{uid}"
    target = f"{app}/Leaky"
    handle = run_app(build_leaky(fail_after_mb=400), app, scalable=True)
    restart = RecoveryWorkflow("memory-leak-detected", Trigger.MEMORY_GROWTH, target, (
        RecoveryStep("restart", {"graceful": True, "delay_s": 0, "deployment": target},
                     timeout_s=90),), (), 120.0, "high",
        ClinicalContext("administrative", "medium"))
    orch = orchestrator(f"orch-mem-{uid}", workflows=[restart])
    assert handle.remote(0).result(timeout_s=30) == "ok"
    # the limit: what the replica uses now and the 400 MB after which it fails
    [baseline] = [m for m in ProcessReader().read(1.0) if m.service == target]
    limit_mb = baseline.rss_bytes / 2 ** 20 + 400
    mon = predictive_monitor(REDIS_URL, f"monitor-mem-{uid}", f"orch-mem-{uid}", start=False,
                             prefix=f"none{uid}", memory_limit_mb=limit_mb)
    try:
        failed, alerts, t = 0, [], 0.0
        for _ in range(40):  # up to 400 MB: the replica would start failing at the end
            t += 10.0
            failed += not answered(handle, MB_PER_READING)
            alerts += ray.get(mon.read_memory.remote(now=t))
            if alerts:
                break
        [alert] = alerts
        assert alert["service"] == target and "of its limit" in alert["detail"]
        assert t <= 300  # within five simulated minutes of 60 MB a minute
        # the orchestrator restarts the deployment: a fresh replica, its memory back
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
                "ended_at" in r for r in ray.get(orch.runs.remote())):
            failed += not answered(handle, 0)
            time.sleep(0.2)
        [run] = ray.get(orch.runs.remote())
        assert run["trigger"] == "memory_growth" and run["succeeded"], run
        for _ in range(20):  # and it keeps answering
            failed += not answered(handle, 1)
        assert failed == 0
        ray.get(mon.read_memory.remote(now=t + 10))
        [(replica, now)] = ray.get(mon.memory_state.remote())["replicas"].items()
        assert replica != alert["target"]  # another process
        assert now["rss_mb"] < baseline.rss_bytes / 2 ** 20 + 100
        # what the control API shows (GET /api/v1/resources) is kept in Redis
        kept = json.loads(connect(REDIS_URL).get(f"selfheal:monitor-mem-{uid}:memory"))
        assert [a["target"] for a in kept["alerts"]] == [alert["target"]]
    finally:
        ray.kill(mon)
        ray.kill(orch)
        delete_app(app)
        client = connect(REDIS_URL)
        for key in client.scan_iter(f"selfheal:monitor-mem-{uid}:*"):
            client.delete(key)
