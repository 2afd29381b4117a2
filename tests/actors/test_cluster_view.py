"""The health read's one-round-trip script against a real Redis: it sees what the writers
wrote, exactly as reading each key by hand does, across many SCAN pages."""

from __future__ import annotations

import json

import pytest
import redis

from actors.stores.actor_state import ActorState
from actors.stores.cluster_view import CIRCUIT_FIELDS, ClusterViewReader, circuit_view
from actors.stores.embedded_redis import EmbeddedRedis
from actors.stores.metric_stream import MetricRecorder, read_counts
from actors.stores.redis_state import CircuitStateStore
from healing import ManualClock
from tests.factories import make_guard


@pytest.fixture
def server(tmp_path):
    s = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    yield s
    s.stop()


def _by_hand(client: redis.Redis) -> list[dict]:
    """Each circuit read with its own HMGET: what the script must agree with."""
    out = []
    for key in sorted(k.decode() for k in client.scan_iter("circuit:*")):
        row = client.hmget(key, *CIRCUIT_FIELDS)
        if row[0] is not None:
            out.append(circuit_view(key.removeprefix("circuit:"),
                                    dict(zip(CIRCUIT_FIELDS, row, strict=True))))
    return out


def test_one_read_sees_every_circuit_counter_and_check_across_scan_pages(server):
    client = server.client()
    store = CircuitStateStore(client)
    # more keys than one SCAN page holds (1,000), most of them not circuits
    for i in range(1200):
        name = f"service{i % 7}:provider{i}"
        store.save(name, {"name": name, "version": i, "state": "open" if i % 5 == 0
                          else "closed", "retry_at": 1000.0 + i if i % 5 == 0 else None,
                          "isolated": [f"replica-{i % 3}"] if i % 11 == 0 else [],
                          "lease_holder": None, "reason": f"r{i}"}, {"version": i})
        store.save_field(name, "stats", {"calls": i, "failure_rate": i / 1200,
                                         "processes": {"replica-0": {"calls": i}}})
    client.mset({f"noise:{i}": i for i in range(3000)})
    client.hset("circuit:half-written", "reason", "no state yet")  # not a circuit yet
    guard = make_guard(ManualClock())
    guard.sink = MetricRecorder(client, sample_rate=1.0, flush_interval_s=0)
    for service in ("billing", "triage"):
        for _ in range(3):
            guard.call(service, lambda: {"ok": True})
    guard.sink.flush()
    checks = ActorState(client, "selfheal:health")
    checks.put("status", "ehr", {"status": "healthy", "at": 5.0})
    checks.put("status", "pharmacy", {"status": "unhealthy", "at": 6.0})

    view = ClusterViewReader(client, "selfheal:health:status")()

    assert len(view.circuits) == 1200
    assert view.circuits == _by_hand(client)
    first = next(c for c in view.circuits if c["name"] == "service0:provider0")
    assert (first["state"], first["retry_at"], first["isolated"]) == ("open", 1000.0,
                                                                      ["replica-0"])
    assert view.calls == {s: read_counts(client, s) for s in ("billing", "triage")}
    assert view.calls["billing"]["total"] == 3
    assert view.health_checks == {"ehr": {"status": "healthy", "at": 5.0},
                                  "pharmacy": {"status": "unhealthy", "at": 6.0}}


def test_the_script_is_reloaded_after_redis_forgets_it_and_an_outage_raises(server):
    client = server.client(timeout_s=0.5)
    CircuitStateStore(client).save("ehr:fhir", {"state": "closed", "version": 1},
                                   {"version": 1})
    read = ClusterViewReader(client, "selfheal:health:status")
    assert [c["name"] for c in read().circuits] == ["ehr:fhir"]
    client.script_flush()  # as after a Redis restart
    assert [c["name"] for c in read().circuits] == ["ehr:fhir"]
    assert json.loads(client.hget("circuit:ehr:fhir", "snapshot")) == {"version": 1}
    server.stop()
    with pytest.raises(redis.RedisError):
        read()
