"""The orchestrator's error watch as a plain object on the machine's Redis: thresholds
adopted and reverted with their history, found again by a successor (a restarted actor),
and each round kept with what it read."""

from __future__ import annotations

import uuid

import pytest

from actors.error_watch import WATCH_KEPT, ErrorWatch
from actors.stores.actor_state import ActorState
from actors.stores.redis_conn import connect

REDIS_URL = "redis://127.0.0.1:6379/0"


class Counts:
    """What the services' streams hold, as LiveEvidence.windows reads them (tested on real
    streams in test_orchestrator_actor.py): (errors, calls) per window asked for."""

    def __init__(self, per_service):
        self.per_service = per_service

    def windows(self, service, windows_s, now):
        return [self.per_service[service][w] for w in windows_s]


@pytest.fixture
def state():
    client = connect(REDIS_URL)
    prefix = f"selfheal:test-watch-{uuid.uuid4().hex[:8]}"
    yield ActorState(client, prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_thresholds_change_revert_and_survive_a_restart(state):
    watch = ErrorWatch({"a": (0.1, 30.0)}, 10, 2.326, Counts({}), state)
    assert watch.adopt("a", 0.2, 60) == ((0.1, 30.0), (0.2, 60.0))
    assert watch.adopt("b", 0.3, 30) == (None, (0.3, 30.0))
    successor = ErrorWatch({"a": (0.1, 30.0)}, 10, 2.326, Counts({}), state)
    successor.restore()
    assert successor.thresholds == {"a": (0.2, 60.0), "b": (0.3, 30.0)}
    assert successor.revert("b") == ((0.3, 30.0), None) and "b" not in successor.thresholds
    assert successor.revert("a") == ((0.2, 60.0), (0.1, 30.0))
    with pytest.raises(ValueError, match="a: no earlier error threshold"):
        successor.revert("a")
    third = ErrorWatch({}, 10, 2.326, Counts({}), state)
    third.restore()
    assert third.thresholds == {"a": (0.1, 30.0)}


def test_a_round_reads_each_service_and_is_kept_fired_or_not(state):
    counts = Counts({"a": {30.0: (60, 100), 5.0: (20, 30)}, "b": {60.0: (0, 50), 10.0: (0, 9)}})
    watch = ErrorWatch({"a": (0.25, 30.0), "b": (0.1, 60.0)}, 10, 2.326, counts, state)
    read = watch.read(1000.0)
    rule, reading = read["a"]
    assert reading == [60, 100, 20, 30] and rule.fires(*reading)
    assert read["b"][1] == [0, 50, 0, 9] and not read["b"][0].fires(*read["b"][1])
    watch.keep(1000.0, 0.01234, {s: r for s, (_, r) in read.items()}, {"a": "queued"})
    [kept] = state.items("watch")
    assert kept == {"at": 1000.0, "took_s": 0.0123, "services": {
        "a": {"errors": 60, "calls": 100, "recent_errors": 20, "recent_calls": 30,
              "admitted": "queued"},
        "b": {"errors": 0, "calls": 50, "recent_errors": 0, "recent_calls": 9,
              "admitted": None}}}
    for t in range(WATCH_KEPT + 5):  # the newest hour's rounds only
        watch.keep(2000.0 + t, 0.0, {"a": [0, 0, 0, 0]}, {})
    rounds = state.items("watch")
    assert len(rounds) == WATCH_KEPT and rounds[-1]["at"] == 2000.0 + WATCH_KEPT + 4
