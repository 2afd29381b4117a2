"""Prevention in production (seed 7.1), live: a recurring failure in the audit trail is
learnt by a training, the champion's patterns reach the running predictive monitor, which
raises a ``predicted`` trigger ahead of the next occurrence; the real orchestrator restarts
the service, the occurrence does not happen, and both the prediction and the restart are in
the audit trail. Time is data: the monitor is stepped at given instants of a simulated day,
and the service is told the time of each call; nothing waits for time to pass."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import ray

from actors.live_history import recorded_failures
from actors.ray_gateway import NAMESPACE
from actors.runtime import orchestrator, predictive_monitor
from actors.stores.audit_sql import AuditStore
from actors.training_job import run_training
from healing import ClinicalContext
from healing.audit import PatientImpact, chain, circuit_transition, failure_event
from healing.workflow import RecoveryStep, RecoveryWorkflow, Trigger
from learning.model_registry import set_champion
from tests.conftest import REDIS_URL

DAY = 86400.0
MIDNIGHT = datetime(2026, 11, 23, tzinfo=UTC).timestamp()
ADMIN = ClinicalContext("administrative", "medium")


def at(day, hour, minute=0, second=0):
    return MIDNIGHT + day * DAY + hour * 3600 + minute * 60 + second


class PoolService:
    """A service process whose connection pool deadlocks at the 14:00 peak once it has
    served more than ``aged`` calls since it started: a fresh process gets through it."""

    def __init__(self, aged: int = 300) -> None:
        self.served, self.aged = 0, aged

    def call(self, now: float) -> bool:
        self.served += 1
        peak = 14 * 3600 <= now % DAY < 14 * 3600 + 600
        return not (peak and self.served > self.aged)


def traffic(pool, start, end, every_s=10.0):
    """Calls from ``start`` to ``end``; how many failed."""
    n = int((end - start) // every_s)
    return sum(not ok for ok in ray.get([pool.call.remote(start + i * every_s)
                                         for i in range(n)]))


def record_deadlocks(store, service, days):
    """What the guard writes for each failed call, a few per minute from 14:00 on each day,
    and the circuit opening a minute in (an incident: failures alone are not one)."""
    prev, records = "", []
    for seq, t in enumerate(at(d, 14, 0, s) for d in days for s in range(20, 300, 20)):
        r = chain(failure_event(service=service, at=t, context=ADMIN,
                                pseudonymize=lambda x: x, error_kind="TimeoutError",
                                error="connection pool exhausted", provider=None,
                                recovery_actions=[], served_by=None, integrity=None,
                                clinician_notified=False,
                                patient_impact=PatientImpact.SERVICE_UNAVAILABLE),
                  "guard-1", seq, prev)
        prev = r.hash
        records.append(r)
    prev = ""
    for seq, d in enumerate(days):
        r = chain(circuit_transition(service=service, at=at(d, 14, 1), circuit=f"{service}:db",
                                     from_state="CLOSED", to_state="OPEN", reason="failures"),
                  "guard-2", seq, prev)
        prev = r.hash
        records.append(r)
    store.insert(records)


def audit_when(store, ready, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(store.records())
        if ready(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def test_a_learnt_recurring_failure_is_predicted_and_prevented_live(ray_cluster, tmp_path):
    uid = uuid.uuid4().hex[:6]
    service, pool_name, orch_name = f"pharmacy{uid}", f"pool-{uid}", f"orch-{uid}"
    audit = {"spool_dir": str(tmp_path / "spool"),
             "database_url": f"sqlite:///{tmp_path / 'audit.db'}", "flush_interval_s": 0.05}
    store = AuditStore(audit["database_url"])
    store.migrate()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pool = ray.remote(PoolService).options(
        name=pool_name, namespace=NAMESPACE, lifetime="detached", max_restarts=-1,
        max_task_retries=-1, num_cpus=0).remote()
    prevent = RecoveryWorkflow(f"prevent:{service}", Trigger.PREDICTED, service, (
        RecoveryStep("restart", {"actor": f"{NAMESPACE}/{pool_name}", "delay_s": 0},
                     timeout_s=30),), (), 60.0, "low", ADMIN)
    orch = orchestrator(orch_name, workflows=[prevent], audit=audit)
    mon = predictive_monitor(REDIS_URL, f"monitor-{uid}", orch_name, start=False,
                             prefix=f"none{uid}", model_uri=uri)
    try:
        # Day 0, nothing learnt yet: the morning ages the pool and the 14:00 peak fails.
        assert traffic(pool, at(0, 12), at(0, 13, 55)) == 0
        assert traffic(pool, at(0, 14), at(0, 14, 5)) == 30
        # That day and the four before are in the audit trail; the training finds the
        # recurrence in it and an operator promotes the model that carries it.
        record_deadlocks(store, service, range(-4, 1))
        out = run_training(uri, [], [], use_ray=False, promote=False,
                           live_failures=recorded_failures(store, at(-28, 0), at(1, 0)))
        [found] = [p for p in out["patterns"] if p.startswith(service)]
        assert "TimeoutError daily at 14:00 UTC (5/5)" in found and "restart" in found
        set_champion(uri, out["version"], ["the 14:00 deadlock: prevent it"])

        # Day 1: the same morning; at 13:56 the monitor, following the champion, predicts
        # the 14:00 occurrence (once, however often it is stepped)...
        assert traffic(pool, at(1, 12), at(1, 13, 55)) == 0
        assert ray.get(mon.step.remote(now=at(1, 13, 50))) == []
        assert ray.get(mon.predictions.remote()) == []  # not yet within the 5 min lead
        ray.get(mon.step.remote(now=at(1, 13, 56)))
        ray.get(mon.step.remote(now=at(1, 13, 57)))
        [predicted] = ray.get(mon.predictions.remote())
        assert predicted["service"] == service and predicted["priority"] == "high"
        assert at(1, 14) <= predicted["due_at"] < at(1, 14, 1)
        # ... the orchestrator runs the prevention workflow: the service restarts ...
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                "ended_at" in r for r in ray.get(orch.runs.remote())):
            time.sleep(0.05)
        [run] = ray.get(orch.runs.remote())
        assert run["trigger"] == "predicted" and run["succeeded"], run
        assert run["workflow"] == f"prevent:{service}" and "14:00 UTC" in run["detail"]
        # ... and the 14:00 peak passes without a single failed call.
        assert traffic(pool, at(1, 14), at(1, 14, 10)) == 0
        # A monitor restarted meanwhile remembers the occurrence it acted on: no second
        # restart for it.
        ray.kill(mon, no_restart=False)
        # the kill is asynchronous: until the new instance answers, the old one may
        # (it remembers its prediction; the new one starts with none)
        deadline = time.monotonic() + 30
        while ray.get(mon.predictions.remote()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ray.get(mon.step.remote(now=at(1, 13, 59))) == []
        assert ray.get(mon.predictions.remote()) == []
        assert ray.get(mon.state.remote())["patterns"] == [found]
        assert len(ray.get(orch.runs.remote())) == 1
        # The prediction and the restart are both in the audit trail.
        records = audit_when(store, lambda rs: any(r.kind.value == "recovery_step" and
                                                   r.data["status"] == "succeeded"
                                                   for r in rs))
        [why] = [r for r in records if r.kind.value == "operator_action"]
        assert why.data["operator"] == "selfheal:prevention"
        assert why.data["action"] == "failure_predicted" and why.service == service
        assert why.data["details"]["admitted"] in ("started", "queued")
        steps = [(r.data["action"], r.data["status"]) for r in records
                 if r.kind.value == "recovery_step"]
        assert steps == [("restart", "started"), ("restart", "succeeded")]
    finally:
        for actor in (mon, orch, pool):
            ray.kill(actor)
        store.dispose()
        from actors.stores.redis_conn import connect

        client = connect(REDIS_URL)
        for key in client.scan_iter(f"selfheal:monitor-{uid}:*"):
            client.delete(key)
