"""An actor's persisted state through a Redis outage: what changed while Redis was away is
written, in order, once it answers again (a real Redis, stopped and started)."""

from __future__ import annotations

import pytest

from actors.stores import actor_state
from actors.stores.actor_state import ActorState
from actors.stores.embedded_redis import EmbeddedRedis


@pytest.fixture
def server(tmp_path):
    s = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    yield s
    s.stop()


def test_a_run_that_ends_while_redis_is_away_is_persisted_as_ended_once_it_is_back(server):
    """The chaos suite's case: a recovery run ended during a Redis stop, its last write was
    skipped, and the control API (which reads this state) showed it running for ever."""
    state = ActorState(server.client(timeout_s=0.2), "selfheal:orch")
    state.put("runs", "r1", {"run_id": "r1", "started_at": 1.0})
    state.append("history:r1", {"step": 0, "status": "started"})
    server.stop()
    summary = {"run_id": "r1", "started_at": 1.0}
    state.append("history:r1", {"step": 0, "status": "succeeded"})
    summary.update(ended="completed", ended_at=2.0)
    state.put("runs", "r1", summary)
    summary["ended"] = "changed after the write"  # a write keeps the value it was given
    state.put("alerts", "a", {"n": 1})
    state.put("alerts", "a", {"n": 2})  # supersedes the write still waiting
    state.delete("thresholds", "svc")
    assert state.pending == 4
    assert not state.flush() and state.pending == 4  # still away: nothing lost
    assert state.table("runs") == {} and state.items("history:r1") == []  # reads say so
    server.start()
    assert state.flush() and state.pending == 0
    fresh = ActorState(server.client(), "selfheal:orch")  # as a restarted actor reads it
    assert fresh.table("runs") == {"r1": {"run_id": "r1", "started_at": 1.0,
                                          "ended": "completed", "ended_at": 2.0}}
    assert [e["status"] for e in fresh.items("history:r1")] == ["started", "succeeded"]
    assert fresh.table("alerts") == {"a": {"n": 2}}


def test_a_later_write_goes_after_those_waiting_not_before(server):
    state = ActorState(server.client(timeout_s=0.2), "selfheal:h")
    server.stop()
    state.put("status", "db", "down")
    state.append("log", 1)
    server.start()
    # no flush called: the next write sends the waiting ones first, in their order
    state.append("log", 2, keep=10)
    state.put("status", "db", "up")
    assert state.pending == 0
    assert state.items("log") == [1, 2] and state.table("status") == {"db": "up"}
    state.drop("log")
    assert state.items("log") == []


def test_writes_waiting_are_bounded_and_the_oldest_go_first(server, monkeypatch):
    monkeypatch.setattr(actor_state, "MAX_PENDING", 3)
    state = ActorState(server.client(timeout_s=0.2), "selfheal:m")
    server.stop()
    for i in range(5):
        state.append("events", i)
    assert state.pending == 3 and state.dropped == 2
    server.start()
    assert state.flush()
    assert state.items("events") == [2, 3, 4]
