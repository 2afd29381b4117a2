"""The metric recorder against real Redis servers: sampling, exact counters, outages."""

from __future__ import annotations

import json
import random
import uuid

import pytest

from actors.stores.embedded_redis import EmbeddedRedis
from actors.stores.metric_stream import (
    RETRIED_SECONDS_MAX,
    MetricRecorder,
    read_counts,
    read_events,
    take_retried,
)
from actors.stores.redis_conn import connect
from healing import ClinicalContext, ManualClock
from tests.factories import make_guard


@pytest.fixture
def redis_client():
    client = connect("redis://127.0.0.1:6379/0")
    prefix = f"test:{uuid.uuid4().hex[:10]}"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def guard_with(recorder):
    g = make_guard(ManualClock())
    g.sink = recorder
    return g


def ok():
    return {"ok": True}


def down():
    raise ConnectionError("down")


def test_errors_always_recorded_successes_sampled_counters_exact(redis_client):
    client, prefix = redis_client
    rec = MetricRecorder(client, sample_rate=0.1, flush_interval_s=0, rng=random.Random(3),
                         prefix=prefix)
    g = guard_with(rec)
    for i in range(2000):
        if i % 10 == 0:
            with pytest.raises(ConnectionError):
                g.call("billing", down)
        else:
            g.call("billing", ok)
    rec.flush()
    counts = read_counts(client, "billing", prefix)
    assert counts == {"total": 2000, "errors": 200}
    events = read_events(client, "billing", prefix)
    errors = [e for e in events if e[2] == 0]
    assert len(errors) == 200  # every error
    successes = len(events) - len(errors)
    assert 120 <= successes <= 240  # ~10 % of 1,800
    assert rec.stats.sent == len(events)


def test_fallback_answers_count_as_errors_of_the_primary_and_as_fallbacks(redis_client):
    client, prefix = redis_client
    rec = MetricRecorder(client, sample_rate=1.0, flush_interval_s=0, prefix=prefix)
    g = guard_with(rec)
    g.call("care_locator", down)
    rec.flush()
    assert read_counts(client, "care_locator", prefix) == {"total": 1, "errors": 1,
                                                            "fallbacks": 1}
    [event] = read_events(client, "care_locator", prefix)
    assert event[3] == "ConnectionError" and event[4] == "static_fallback"


def test_shed_calls_are_counted_exactly(redis_client):
    from healing.admission import AdmissionConfig
    from healing.limits import CallGate, CallPolicy
    from healing.safety import Acuity

    client, prefix = redis_client
    rec = MetricRecorder(client, sample_rate=0.0, flush_interval_s=0, prefix=prefix)
    g = guard_with(rec)
    g.gate = CallGate({("care_locator", None): CallPolicy(
        admission=AdmissionConfig(limit=1, reserved=()))}, g.clock)
    lane = g.gate.lane("care_locator", None)
    assert lane.acquire(Acuity.ROUTINE, None) == "admitted"  # the only place, taken
    for _ in range(3):
        assert g.call("care_locator", ok).tier == "static_fallback"
    lane.release()
    g.call("care_locator", ok)
    rec.flush()
    assert read_counts(client, "care_locator", prefix) == {
        "total": 4, "errors": 3, "fallbacks": 3, "shed": 3}
    assert [e[3] for e in read_events(client, "care_locator", prefix)] == ["shed"] * 3


def test_failed_attempts_a_retry_answered_are_counted_though_no_event_shows_them(redis_client):
    from healing import Guard
    from healing.budget import RetryBudgetConfig
    from healing.limits import CallGate, CallPolicy
    from healing.registry import CircuitBreakerRegistry
    from tests.factories import small_config

    client, prefix = redis_client
    rec = MetricRecorder(client, sample_rate=0.0, flush_interval_s=0, prefix=prefix)
    clock = ManualClock()
    g = Guard(clock=clock, sink=rec, breakers=CircuitBreakerRegistry(clock, small_config(
        window_size=50, minimum_number_of_calls=50)), gate=CallGate({("billing", None): CallPolicy(
            retries=1, retry_budget=RetryBudgetConfig(min_per_s=100.0))}, clock))
    attempts = []

    def flaky():  # every first attempt fails, every retry answers
        attempts.append(1)
        if len(attempts) % 2:
            raise ConnectionError("leaking")
        return {"ok": True}

    for k in range(4):
        clock.advance(1.0 if k == 2 else 0.0)  # two requests in one second, two in the next
        assert g.call("billing", flaky).tier == "primary"
    with pytest.raises(ConnectionError):  # a request whose retry fails too
        g.call("billing", down)
    rec.flush()
    # the four answered requests are plain successes (none streamed at sample rate 0); the
    # failed one is an error; the five first attempts that failed are counted apart
    assert read_counts(client, "billing", prefix) == {"total": 5, "errors": 1,
                                                            "retried": 5}
    assert [e[3] for e in read_events(client, "billing", prefix)] == ["ConnectionError"]
    # and by the second each happened in, for the monitor, which takes them once
    second = int(clock.wall()) - 1
    assert take_retried(client, ["billing", "nothing_retried"], prefix) == {
        "billing": [(second, 2), (second + 1, 3)]}
    assert take_retried(client, ["billing"], prefix) == {}


def test_retried_attempts_held_while_redis_is_away_keep_their_seconds(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    client = server.client(timeout_s=0.2)
    rec = MetricRecorder(client, sample_rate=1.0, flush_interval_s=0)
    try:
        rec.retried("billing", 1000.2)
        rec.flush()
        server.stop()
        for at in (1001.5, 1001.9, 1030.0):
            rec.retried("billing", at)
        with pytest.raises(Exception):
            rec.flush()
        rec.retried("billing", 1031.0)
        server.start()
        rec.flush()  # the failed flush, then what came after it
        # each attempt in its own second, not in a burst at the time Redis came back
        assert take_retried(client, ["billing"]) == {
            "billing": [(1000, 1), (1001, 2), (1030, 1), (1031, 1)]}
        assert read_counts(client, "billing") == {"retried": 5}
        assert client.ttl("metrics:billing:retried") == -2  # taken: gone
    finally:
        server.stop()


def test_a_long_outage_keeps_the_newest_seconds_of_retried_attempts(redis_client):
    client, prefix = redis_client
    rec = MetricRecorder(client, sample_rate=1.0, flush_interval_s=0, prefix=prefix)
    for k in range(RETRIED_SECONDS_MAX + 5):
        rec.retried("billing", 5000.0 + k)
    rec.flush()
    seconds = take_retried(client, ["billing"], prefix)["billing"]
    assert len(seconds) == RETRIED_SECONDS_MAX and seconds[0] == (5005, 1)
    assert read_counts(client, "billing", prefix) == {"retried": RETRIED_SECONDS_MAX + 5}
    # a count no monitor takes does not stay for ever
    rec.retried("billing", 9000.0)
    rec.flush()
    assert 0 < client.ttl(f"{prefix}:billing:retried") <= 3600


def test_events_never_carry_identifiers(redis_client):
    client, prefix = redis_client
    rec = MetricRecorder(client, sample_rate=1.0, flush_interval_s=0, prefix=prefix)
    g = guard_with(rec)
    ctx = ClinicalContext("diagnostic", "high", patient_id="MRN-5551212")
    g.call("clinical_reasoning", lambda: {"confidence": 0.9}, context=ctx)
    rec.flush()
    dump = repr([client.xrange(k) for k in client.scan_iter(f"{prefix}:*")
                 if client.type(k) == b"stream"])
    assert "MRN-5551212" not in dump and "diagnostic" not in dump


def test_a_retried_flush_is_applied_once(redis_client):
    client, prefix = redis_client
    rec = MetricRecorder(client, sample_rate=1.0, flush_interval_s=0, prefix=prefix)
    g = guard_with(rec)
    for _ in range(5):
        g.call("billing", ok)
    rec.flush()
    rec.resend_last_for_testing()  # the reply was lost; the same flush goes again
    assert read_counts(client, "billing", prefix) == {"total": 5}
    assert len(read_events(client, "billing", prefix)) == 5


def test_stream_length_is_capped(redis_client):
    client, prefix = redis_client
    rec = MetricRecorder(client, sample_rate=1.0, maxlen=100, flush_interval_s=0,
                         prefix=prefix)
    g = guard_with(rec)
    for _ in range(400):  # one stream entry per flush
        g.call("billing", ok)
        rec.flush()
    # MAXLEN ~ trims whole 100-entry nodes: at most maxlen plus one node remains.
    assert client.xlen(f"{prefix}:billing") <= 200
    assert read_counts(client, "billing", prefix)["total"] == 400  # counters are not capped


def test_entry_ids_are_event_times_and_age_trims_by_them(redis_client):
    """Ids are the entry's latest event time (never behind the stream's newest id), an entry
    spans at most 10 s, and with retention_s the stream keeps only the newest minute."""
    from healing.outcome import OutcomeRecord
    from healing.safety import Criticality, OperationType

    client, prefix = redis_client
    rec = MetricRecorder(client, sample_rate=1.0, flush_interval_s=0, prefix=prefix,
                         retention_s=60)
    t0 = 1_900_000_000.0

    def outcome(at):
        return OutcomeRecord("billing", "p", True, 0.01, None, "primary", None,
                             OperationType.ADMINISTRATIVE, Criticality.MEDIUM, at)
    for i in range(400):  # one a second, flushed at once: entries of at most 10 s
        rec.record(outcome(t0 + i))
    rec.flush()
    entries = client.xrange(f"{prefix}:billing")
    ids = [int(e[0].split(b"-")[0]) for e in entries]
    assert ids[-1] == (t0 + 399) * 1000 and ids == sorted(ids)
    kept = read_events(client, "billing", prefix)
    assert t0 + 399 - 70 <= kept[0][0] <= t0 + 399 - 50  # the newest minute, whole entries
    assert all(max(e[0] for e in evs) - min(e[0] for e in evs) <= 10 for evs in (
        [json.loads(f[b"events"])][0] for _, f in entries))
    # an event older than the stream's newest gets an id just after it: ids only grow
    rec.record(outcome(t0 + 5))
    rec.flush()
    last = client.xrevrange(f"{prefix}:billing", count=1)[0][0]
    assert last == f"{int((t0 + 399) * 1000)}-1".encode()
    with pytest.raises(ValueError, match="retention_s must be positive"):
        MetricRecorder(client, flush_interval_s=0, retention_s=0)


def test_redis_down_and_back_guard_unaffected_counters_exact(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    client = server.client(timeout_s=0.2)
    rec = MetricRecorder(client, sample_rate=1.0, buffer_max=1000, flush_interval_s=0)
    g = guard_with(rec)
    try:
        for _ in range(100):
            g.call("billing", ok)
        rec.flush()
        server.stop()  # Redis goes away mid-run
        for i in range(1500):
            assert g.call("billing", ok).data == {"ok": True}  # never fails because of it
            if i == 700:
                with pytest.raises(Exception):
                    rec.flush()
        assert rec.stats.dropped == 1500 - 1000  # the bounded buffer, counted
        server.start()  # and comes back, with its data
        rec.flush()
        assert read_counts(client, "billing") == {"total": 1600}  # exact, despite drops
        assert len(read_events(client, "billing")) == 100 + 1000
        assert rec.stats.failed_flushes == 1
    finally:
        server.stop()


def test_recorder_rejects_a_bad_sample_rate():
    with pytest.raises(ValueError, match="sample_rate"):
        MetricRecorder(connect("redis://127.0.0.1:6379"), sample_rate=2, flush_interval_s=0)
