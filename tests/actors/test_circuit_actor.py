"""The cluster-wide circuit on a real Ray cluster and a real Redis."""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest

from actors.circuit_actor import config_to_dict
from actors.runtime import circuit_actor
from actors.stores.audit_sql import AuditStore
from actors.stores.audit_trail import AuditTrail
from actors.stores.redis_conn import connect
from actors.stores.redis_state import CircuitStateStore
from healing import CircuitConfig
from healing.cluster import ClusterPolicy
from tests.actors.hosts import GuardHost
from tests.conftest import REDIS_URL
from tests.factories import audit_problems

CONFIG = dict(window_size=20, minimum_number_of_calls=10, failure_rate_threshold=0.5,
              wait_in_open_s=30.0, permitted_calls_in_half_open=2)
POLICY = dict(probe_lease_s=5.0)


@pytest.fixture
def service():
    name = f"svc-{uuid.uuid4().hex[:8]}"
    yield name
    client = connect(REDIS_URL)
    client.delete(f"circuit:{name}")


@pytest.fixture
def hosts(ray_cluster, service):
    made = []

    def make(*names, audit=None):
        remote = ray_cluster.remote(num_cpus=0)(GuardHost)
        for n in names:
            h = remote.remote(n, CONFIG, POLICY, REDIS_URL, 0.0, audit)
            ray_cluster.get(h.attach.remote(service))
            made.append(h)
        return made[-len(names):]

    yield make
    for h in made:
        ray_cluster.get(h.close.remote())
        ray_cluster.kill(h)
    with contextlib.suppress(ValueError):  # the test may have removed it already
        ray_cluster.kill(ray_cluster.get_actor(f"circuit:{service}", namespace="selfheal"))


def wait_until(fn, timeout_s=20.0):
    """Wait for an event (a state reaching another process), not for time to pass."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("the expected state never arrived")


def test_two_processes_see_one_merged_circuit(ray_cluster, hosts, service):
    a, b = hosts("a", "b")
    # 6 failures each: under each process's own minimum of 10, over the cluster's.
    assert ray_cluster.get(a.calls.remote(service, 0, 6)) == ["failed"] * 6
    ray_cluster.get(a.step.remote())
    assert ray_cluster.get(a.state.remote(service)) == "CLOSED"
    ray_cluster.get(b.calls.remote(service, 0, 6))
    ray_cluster.get(b.step.remote())
    for h in (a, b):
        wait_until(lambda h=h: ray_cluster.get(h.state.remote(service)) == "OPEN")
    assert ray_cluster.get(a.calls.remote(service, 1, 0)) == ["CircuitOpenError"]
    saved = CircuitStateStore(connect(REDIS_URL)).read(service)
    assert saved["state"] == "open" and "shared failure" in saved["reason"]


def test_one_sick_process_is_isolated_not_the_whole_cluster(ray_cluster, hosts, service):
    sick, well = hosts("sick", "well")
    ray_cluster.get(well.calls.remote(service, 10, 0))
    ray_cluster.get(well.step.remote())
    ray_cluster.get(sick.calls.remote(service, 0, 12))
    ray_cluster.get(sick.step.remote())
    assert ray_cluster.get(sick.state.remote(service)) == "OPEN"  # its own breaker
    assert ray_cluster.get(well.calls.remote(service, 3, 0)) == ["ok"] * 3
    assert ray_cluster.get(well.state.remote(service)) == "CLOSED"
    actor = ray_cluster.get_actor(f"circuit:{service}", namespace="selfheal")
    assert ray_cluster.get(actor.view.remote())["state"] == "closed"


def test_one_probe_lease_then_the_cluster_closes_for_everyone(ray_cluster, hosts, service):
    a, b = hosts("a", "b")
    for h in (a, b):
        ray_cluster.get(h.calls.remote(service, 0, 6))
        ray_cluster.get(h.step.remote())
    for h in (a, b):
        wait_until(lambda h=h: ray_cluster.get(h.state.remote(service)) == "OPEN")
        ray_cluster.get(h.advance.remote(31.0))  # past the cluster's 30 s wait, in step
    ray_cluster.get(a.step.remote())  # a asks first and gets the lease
    ray_cluster.get(b.step.remote())
    assert ray_cluster.get(a.state.remote(service)) == "HALF_OPEN"
    assert ray_cluster.get(b.state.remote(service)) == "OPEN"  # no stampede
    assert ray_cluster.get(b.calls.remote(service, 1, 0)) == ["CircuitOpenError"]
    assert ray_cluster.get(a.calls.remote(service, 2, 0)) == ["ok", "ok"]  # the trials
    ray_cluster.get(a.step.remote())
    for h in (a, b):
        wait_until(lambda h=h: ray_cluster.get(h.state.remote(service)) == "CLOSED")
    assert ray_cluster.get(b.calls.remote(service, 1, 0)) == ["ok"]


def test_a_killed_actor_restarts_from_redis_and_loses_no_transition(ray_cluster, hosts,
                                                                     service, tmp_path):
    audit = {"spool_dir": str(tmp_path / "spool"),
             "database_url": f"sqlite:///{tmp_path / 'audit.db'}"}
    store = AuditStore(audit["database_url"])
    store.migrate()
    a, b = hosts("a", "b", audit=audit)
    for h in (a, b):
        ray_cluster.get(h.calls.remote(service, 0, 6))
        ray_cluster.get(h.step.remote())
    actor = ray_cluster.get_actor(f"circuit:{service}", namespace="selfheal")
    before = ray_cluster.get(actor.view.remote())
    assert before["state"] == "open"
    ray_cluster.kill(actor, no_restart=False)  # a crash, mid-stream: Ray restarts it
    after = wait_until(lambda: _view_or_none(ray_cluster, actor))
    assert after["state"] == "open" and after["version"] == before["version"]
    assert after["retry_at"] == before["retry_at"]
    # The processes keep working through the restart and still see the open circuit...
    assert ray_cluster.get(b.calls.remote(service, 1, 0)) == ["CircuitOpenError"]
    # ...and the restarted actor carries the cycle on: probe lease, trials, close.
    for h in (a, b):
        ray_cluster.get(h.advance.remote(31.0))
    ray_cluster.get(a.step.remote())
    assert ray_cluster.get(a.calls.remote(service, 2, 0)) == ["ok", "ok"]
    ray_cluster.get(a.step.remote())
    for h in (a, b):
        wait_until(lambda h=h: ray_cluster.get(h.state.remote(service)) == "CLOSED")
    ray_cluster.kill(actor, no_restart=False)  # its spool is flushed by whoever comes next
    wait_until(lambda: _view_or_none(ray_cluster, actor))
    trail = AuditTrail(audit["spool_dir"], store, None, flush_interval_s=0)
    wait_until(lambda: trail.flush() >= 0 and _cluster_moves(store) == [
        ("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")])
    trail.close()
    assert audit_problems(store) == []
    store.dispose()


def _cluster_moves(store):
    from sqlalchemy import text

    with store.engine.connect() as conn:
        rows = conn.execute(text("select from_state, to_state from circuit_transitions "
                                 "where circuit like '%(cluster)' order by at")).all()
    return [tuple(r) for r in rows]


def _view_or_none(ray_cluster, actor):
    try:
        return ray_cluster.get(actor.view.remote(), timeout=5)
    except Exception:
        return None


def test_runtime_finds_the_same_named_actor_from_anywhere(ray_cluster, service):
    cfg = CircuitConfig(**CONFIG)
    first = circuit_actor(service, cfg, ClusterPolicy(), REDIS_URL)
    second = circuit_actor(service, cfg, ClusterPolicy(), REDIS_URL)
    ray_cluster.get(first.join.remote("x", 1.0))
    assert ray_cluster.get(second.view.remote())["version"] == 0
    assert first._actor_id == second._actor_id
    ray_cluster.kill(first)
    assert config_to_dict(cfg)["window_type"] == "count"
