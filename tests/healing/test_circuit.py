"""The circuit breaker's rules, one test each, on a manual clock."""

from __future__ import annotations

import asyncio
import threading

import pytest

from healing import (
    IGNORED,
    CircuitBreaker,
    CircuitConfig,
    CircuitState,
    CircuitTransitioned,
    ConfigError,
    IllegalTransition,
    ManualClock,
    ThresholdExceeded,
    WindowType,
    exceptions_of,
)
from tests.factories import FAILED, SLOW, SUCCESS, make_breaker

S = CircuitState


def run(b: CircuitBreaker, codes: list[int], now: float = 0.0) -> list:
    events = []
    for code in codes:
        p = b.allow(now)
        assert p.allowed
        events += b.record(p, code, now)
    return events


def test_closed_circuit_opens_when_failure_rate_reaches_threshold():
    b = make_breaker()
    run(b, [SUCCESS, SUCCESS, FAILED])
    assert b.state is S.CLOSED  # 3 calls < minimum of 4
    events = run(b, [FAILED])
    assert b.state is S.OPEN
    assert [(e.from_state, e.to_state) for e in events] == [(S.CLOSED, S.OPEN)]
    assert events[0].failure_rate == 0.5 and events[0].calls == 4


def test_failure_rate_below_threshold_keeps_circuit_closed():
    b = make_breaker(window_size=10, minimum_number_of_calls=10)
    run(b, [FAILED] * 4 + [SUCCESS] * 6)
    assert b.state is S.CLOSED
    assert b.metrics().failure_rate == 0.4


def test_minimum_number_of_calls_is_respected_even_at_full_failure():
    b = make_breaker(window_size=10, minimum_number_of_calls=5)
    run(b, [FAILED] * 4)
    assert b.state is S.CLOSED
    run(b, [FAILED])
    assert b.state is S.OPEN


def test_success_that_fills_window_to_minimum_can_open_circuit():
    b = make_breaker(window_size=10, minimum_number_of_calls=4)
    run(b, [FAILED, FAILED, FAILED])
    assert b.state is S.CLOSED
    run(b, [SUCCESS])  # 3 of 4 failed: 75 % >= 50 %
    assert b.state is S.OPEN


def test_count_window_forgets_calls_older_than_its_size():
    b = make_breaker(window_size=4, minimum_number_of_calls=4, failure_rate_threshold=0.75)
    run(b, [FAILED, FAILED, SUCCESS, SUCCESS])
    run(b, [SUCCESS, SUCCESS])  # the two failures leave the window
    m = b.metrics()
    assert (m.calls, m.failed) == (4, 0)


def test_time_window_forgets_calls_older_than_its_seconds():
    b = make_breaker(window_type=WindowType.TIME, window_size=10, minimum_number_of_calls=3)
    run(b, [FAILED], now=0.5)
    run(b, [SUCCESS, SUCCESS], now=5.0)
    assert b.metrics(5.0).calls == 3
    m = b.metrics(10.2)  # second 0 has left the window (seconds 1..10 remain)
    assert (m.calls, m.failed) == (2, 0)


def test_time_window_success_after_eviction_can_open_circuit():
    # Old successes roll out; the failures that remain now exceed the threshold.
    b = make_breaker(window_type=WindowType.TIME, window_size=10, minimum_number_of_calls=3,
                     failure_rate_threshold=0.5)
    run(b, [SUCCESS] * 4, now=0.0)
    run(b, [FAILED, FAILED], now=8.0)
    assert b.state is S.CLOSED  # 2 of 6
    run(b, [SUCCESS], now=10.5)  # second 0 leaves: 2 of 3 failed
    assert b.state is S.OPEN


def test_slow_calls_open_circuit_at_slow_call_rate_threshold():
    b = make_breaker(slow_call_rate_threshold=0.75)
    run(b, [SLOW, SLOW, SUCCESS])
    assert b.state is S.CLOSED
    events = run(b, [SLOW])
    assert b.state is S.OPEN
    assert events[0].reason.startswith("slow-call rate 75%")


def test_classification_uses_slow_call_duration():
    b = make_breaker(slow_call_duration_s=2.0)
    assert b.classify_result("ok", 1.99) == SUCCESS
    assert b.classify_result("ok", 2.0) == SLOW
    assert b.classify_exception(OSError(), 2.5) == FAILED | SLOW


def test_open_circuit_rejects_until_wait_elapses():
    clock = ManualClock()
    b = make_breaker(clock)
    run(b, [FAILED] * 4, now=0.0)
    r = b.allow(9.99)
    assert not r.allowed and r.state is S.OPEN
    assert r.retry_after_s(4.0) == pytest.approx(6.0)
    assert b.retry_at() == pytest.approx(10.0)
    p = b.allow(10.0)
    assert p.allowed and b.state is S.HALF_OPEN


def test_half_open_admits_exactly_the_permitted_trial_calls():
    b = make_breaker(permitted_calls_in_half_open=3)
    run(b, [FAILED] * 4)
    permits = [b.allow(10.0) for _ in range(5)]
    assert [p.allowed for p in permits] == [True, True, True, False, False]


def test_half_open_closes_when_trials_succeed_and_reopens_when_they_fail():
    b = make_breaker()
    run(b, [FAILED] * 4)
    t1, t2 = b.allow(10.0), b.allow(10.0)
    b.record(t1, SUCCESS, 10.0)
    assert b.state is S.HALF_OPEN  # waits for every trial
    b.record(t2, SUCCESS, 10.0)
    assert b.state is S.CLOSED
    assert b.metrics().calls == 0  # a closed circuit starts with a fresh window

    run(b, [FAILED] * 4, now=20.0)
    t1, t2 = b.allow(30.0), b.allow(30.0)
    b.record(t1, FAILED, 30.0)
    b.record(t2, SUCCESS, 30.0)
    assert b.state is S.OPEN


def test_wait_in_open_grows_on_repeated_opens_and_is_capped():
    b = make_breaker(wait_in_open_s=10.0, wait_multiplier=2.0, max_wait_in_open_s=25.0)
    run(b, [FAILED] * 4, now=0.0)
    waits = [b.retry_at() - 0.0]
    now = 0.0
    for _ in range(3):
        now = b.retry_at()
        t1, t2 = b.allow(now), b.allow(now)
        b.record(t1, FAILED, now)
        b.record(t2, FAILED, now)
        waits.append(b.retry_at() - now)
    assert waits == [10.0, 20.0, 25.0, 25.0]
    # Closing forgets the streak.
    now = b.retry_at()
    for p in (b.allow(now), b.allow(now)):
        b.record(p, SUCCESS, now)
    run(b, [FAILED] * 4, now=now)
    assert b.retry_at() - now == 10.0


def test_half_open_times_out_back_to_open_when_trials_never_finish():
    b = make_breaker(max_wait_in_half_open_s=5.0)
    run(b, [FAILED] * 4)
    b.allow(10.0), b.allow(10.0)
    assert not b.allow(12.0).allowed and b.state is S.HALF_OPEN
    events = b.tick(15.0)
    assert b.state is S.OPEN and events[0].reason == "trial calls did not finish in time"


def test_ignored_outcome_returns_trial_permit():
    b = make_breaker()
    run(b, [FAILED] * 4)
    t1, _t2 = b.allow(10.0), b.allow(10.0)
    assert not b.allow(10.0).allowed
    b.record(t1, IGNORED, 10.0)
    assert b.allow(10.0).allowed


def test_ignore_predicate_wins_over_record_predicate():
    cfg = dict(record_exception=exceptions_of(OSError),
               ignore_exception=exceptions_of(TimeoutError))
    b = make_breaker(**cfg)
    assert b.classify_exception(TimeoutError(), 0.0) == IGNORED  # TimeoutError is an OSError
    assert b.classify_exception(ConnectionError(), 0.0) == FAILED
    assert b.classify_exception(ValueError(), 0.0) == SUCCESS  # not recorded: counts as success


def test_result_predicate_counts_invalid_responses_as_failures():
    b = make_breaker(record_result=lambda r: r.get("confidence", 0) < 0.7)
    for conf in (0.2, 0.3, 0.9, 0.1):
        p = b.allow(0.0)
        b.on_result(p, {"confidence": conf}, 0.01, 0.0)
    assert b.state is S.OPEN


def test_outcome_of_a_call_admitted_before_a_transition_is_not_counted():
    b = make_breaker()
    early = b.allow(0.0)
    run(b, [FAILED] * 4)
    t1, t2 = b.allow(10.0), b.allow(10.0)
    b.record(early, FAILED, 10.0)  # stale: must not count as a trial
    b.record(t1, SUCCESS, 10.0)
    b.record(t2, SUCCESS, 10.0)
    assert b.state is S.CLOSED


def test_forced_open_rejects_without_retry_time_and_reset_closes():
    b = make_breaker()
    b.force_open(0.0)
    r = b.allow(1e9)
    assert not r.allowed and r.retry_at is None and r.state is S.FORCED_OPEN
    b.reset(5.0)
    assert b.state is S.CLOSED and b.allow(5.0).allowed


def test_a_timed_force_hands_over_to_trial_calls_that_close_or_reopen_it():
    b = make_breaker()
    b.force_open(0.0, "workflow: traffic moved", until=10.0)
    assert not b.allow(9.9).allowed and b.state is S.FORCED_OPEN
    trials = [b.allow(10.0) for _ in range(2)]  # the config's permitted trial calls
    assert all(t.allowed for t in trials) and b.state is S.HALF_OPEN
    for t in trials:
        b.record(t, SUCCESS, 10.1)
    assert b.state is S.CLOSED
    b.force_open(20.0, "workflow: traffic moved", until=30.0)
    b.tick(30.0)  # time alone ends it too
    assert b.state is S.HALF_OPEN
    trials = [b.allow(30.0) for _ in range(2)]
    for t in trials:
        b.record(t, FAILED, 30.1)
    assert b.state is S.OPEN  # the primary still fails: an ordinary open, with its wait


def test_disabled_admits_everything_and_records_nothing():
    b = make_breaker()
    b.disable(0.0)
    run(b, [FAILED] * 20)
    assert b.state is S.DISABLED and b.metrics().calls == 0


def test_metrics_only_records_and_reports_but_never_opens():
    b = make_breaker()
    b.metrics_only(0.0)
    events = run(b, [FAILED] * 6)
    assert b.state is S.METRICS_ONLY
    assert any(isinstance(e, ThresholdExceeded) for e in events)
    assert b.metrics().failed == 4  # window of 4


def test_illegal_transitions_are_refused():
    b = make_breaker()
    with pytest.raises(IllegalTransition, match="CLOSED to HALF_OPEN"):
        b.transition_to(S.HALF_OPEN, 0.0)
    b.metrics_only(0.0)
    with pytest.raises(IllegalTransition):
        b.transition_to(S.OPEN, 0.0)
    assert b.state is S.METRICS_ONLY


def test_listeners_see_transitions_and_a_failing_listener_breaks_nothing():
    b = make_breaker()
    seen: list[CircuitTransitioned] = []
    b.add_listener(lambda e: 1 / 0)
    b.add_listener(seen.append)
    run(b, [FAILED] * 4)
    assert [(e.from_state, e.to_state) for e in seen] == [(S.CLOSED, S.OPEN)]
    assert seen[0].circuit == "svc" and seen[0].retry_after_s == 10.0


def test_snapshot_is_plain_data_and_restore_survives_time_in_storage():
    clock = ManualClock()
    b = make_breaker(clock)
    run(b, [FAILED] * 4)
    snap = b.snapshot(0.0)
    import json
    snap = json.loads(json.dumps(snap))
    clock.advance(4.0)  # four seconds in Redis
    other = make_breaker(clock)
    other.restore(snap, clock.now())
    assert other.state is S.OPEN
    assert other.retry_at() == pytest.approx(10.0)
    assert not other.allow(9.0).allowed and other.allow(10.0).allowed


@pytest.mark.parametrize("field,value", [("state", "ajar"), ("generation", -1),
                                         ("retry_in_s", "soon"), ("version", 99)])
def test_restore_rejects_a_bad_snapshot_and_changes_nothing(field, value):
    b = make_breaker()
    run(b, [FAILED] * 4)
    snap = b.snapshot(0.0)
    snap[field] = value
    before = make_breaker()
    with pytest.raises(ConfigError, match=f"snapshot.{field}"):
        before.restore(snap, 0.0)
    assert before.state is S.CLOSED and before.metrics().calls == 0


@pytest.mark.parametrize("kwargs,field", [
    ({"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
    ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
    ({"slow_call_duration_s": -1}, "slow_call_duration_s"),
    ({"window_size": 0}, "window_size"),
    ({"wait_in_open_s": float("nan")}, "wait_in_open_s"),
    ({"max_wait_in_open_s": 1.0, "wait_in_open_s": 5.0}, "max_wait_in_open_s"),
    ({"permitted_calls_in_half_open": True}, "permitted_calls_in_half_open"),
    ({"record_exception": "yes"}, "record_exception"),
])
def test_config_errors_name_the_field_and_value(kwargs, field):
    with pytest.raises(ConfigError) as err:
        CircuitConfig(**kwargs)
    assert err.value.field == field
    assert field in str(err.value) and repr(kwargs[field]) in str(err.value)


def test_concurrent_calls_are_not_serialised_by_the_breaker():
    # Eight threads each hold their call open until all eight are inside it: a breaker that
    # held a lock across the call (pybreaker) would deadlock here; the barrier times out.
    b = make_breaker(window_size=100, minimum_number_of_calls=100)
    barrier = threading.Barrier(8, timeout=10)
    results = []

    def worker():
        p = b.allow(0.0)
        barrier.wait()  # every thread is inside its protected call at once
        results.append(b.record(p, SUCCESS, 0.0))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and not barrier.broken
    assert b.metrics().calls == 8


def test_half_open_admits_exactly_n_trials_under_thread_contention():
    b = make_breaker(permitted_calls_in_half_open=3)
    run(b, [FAILED] * 4)
    start = threading.Barrier(16)
    admitted = []

    def worker():
        start.wait()
        admitted.append(b.allow(10.0).allowed)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count(True) == 3


def test_half_open_admits_exactly_n_trials_among_waiting_asyncio_tasks():
    # aiobreaker admits every task that was waiting when the circuit half-opened.
    b = make_breaker(permitted_calls_in_half_open=2)
    run(b, [FAILED] * 4)
    release = asyncio.Event()
    admitted = []

    async def call():
        await release.wait()
        p = b.allow(10.0)
        admitted.append(p.allowed)
        if p.allowed:
            await asyncio.sleep(0)  # the trial call itself, concurrently with the others
            b.record(p, SUCCESS, 10.0)

    async def main():
        tasks = [asyncio.create_task(call()) for _ in range(10)]
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert admitted.count(True) == 2
    assert b.state is S.CLOSED
