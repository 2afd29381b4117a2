"""Retry: attempts, backoff with jitter, predicates, and a deadline never overrun."""

from __future__ import annotations

import asyncio
import random

import pytest

from healing import ConfigError, DeadlineExceeded, ManualClock, Retrier, RetryExhausted, RetryPolicy


class Flaky:
    """Fails ``failures`` times, taking ``cost_s`` of clock time per attempt, then answers."""

    def __init__(self, clock: ManualClock, failures: int, cost_s: float = 0.0) -> None:
        self.clock, self.failures, self.cost_s, self.calls = clock, failures, cost_s, []

    def __call__(self) -> str:
        self.calls.append(self.clock.now())
        self.clock.advance(self.cost_s)
        if len(self.calls) <= self.failures:
            raise ConnectionError(f"attempt {len(self.calls)} failed")
        return "ok"


def test_retries_until_success_with_exponential_backoff_on_the_clock():
    clock = ManualClock()
    op = Flaky(clock, failures=2)
    policy = RetryPolicy(max_attempts=3, base_delay_s=1.0, exponential_base=2.0, full_jitter=False)
    assert Retrier(policy, clock).call(op) == "ok"
    assert op.calls == [0.0, 1.0, 3.0]  # waits of 1 s then 2 s


def test_full_jitter_draws_each_wait_within_the_exponential_cap():
    clock = ManualClock()
    op = Flaky(clock, failures=4)
    policy = RetryPolicy(max_attempts=5, base_delay_s=1.0, exponential_base=3.0, max_delay_s=5.0)
    Retrier(policy, clock, random.Random(7)).call(op)
    waits = [b - a for a, b in zip(op.calls, op.calls[1:], strict=False)]
    caps = [1.0, 3.0, 5.0, 5.0]
    assert all(0 <= w <= c for w, c in zip(waits, caps, strict=True))
    assert len(set(waits)) == len(waits)  # jittered, not fixed


def test_gives_up_after_max_attempts_with_the_last_error_as_cause():
    clock = ManualClock()
    op = Flaky(clock, failures=10)
    with pytest.raises(RetryExhausted) as err:
        Retrier(RetryPolicy(max_attempts=3, base_delay_s=0.1), clock).call(op)
    assert err.value.attempts == 3 and len(op.calls) == 3
    assert isinstance(err.value.__cause__, ConnectionError)


def test_non_retryable_exception_is_raised_at_once():
    clock = ManualClock()
    policy = RetryPolicy(retry_on_exception=lambda e: isinstance(e, ConnectionError))
    calls = []

    def bad():
        calls.append(1)
        raise ValueError("bad request")

    with pytest.raises(ValueError):
        Retrier(policy, clock).call(bad)
    assert calls == [1]


def test_result_predicate_retries_an_unusable_answer():
    clock = ManualClock()
    answers = iter([{"confidence": 0.2}, {"confidence": 0.9}])
    policy = RetryPolicy(retry_on_result=lambda r: r["confidence"] < 0.7, base_delay_s=0.0)
    assert Retrier(policy, clock).call(lambda: next(answers)) == {"confidence": 0.9}


def test_never_starts_a_backoff_that_would_overrun_the_deadline():
    clock = ManualClock()
    op = Flaky(clock, failures=10, cost_s=1.0)
    policy = RetryPolicy(max_attempts=10, base_delay_s=2.0, exponential_base=2.0,
                         full_jitter=False)
    with pytest.raises(DeadlineExceeded):
        Retrier(policy, clock).call(op, deadline=8.0)
    # attempts at 0 (ends 1, wait 2), 3 (ends 4, wait 4 -> 8 would reach the deadline: stop)
    assert op.calls == [0.0, 3.0]
    assert clock.now() <= 8.0


def test_policy_deadline_and_caller_deadline_take_the_tighter():
    clock = ManualClock()
    op = Flaky(clock, failures=10, cost_s=1.0)
    policy = RetryPolicy(max_attempts=10, base_delay_s=1.0, full_jitter=False,
                         exponential_base=1.0, deadline_s=3.5)
    with pytest.raises(DeadlineExceeded):
        Retrier(policy, clock).call(op, deadline=100.0)
    assert clock.now() <= 3.5


def test_async_attempt_is_cut_off_when_the_deadline_arrives():
    clock = ManualClock()
    started = []

    async def hangs():
        started.append(clock.now())
        await clock.asleep(60)  # a provider that never answers in time
        return "late"

    async def main():
        policy = RetryPolicy(max_attempts=5, base_delay_s=0.5, full_jitter=False)
        with pytest.raises(DeadlineExceeded):
            await Retrier(policy, clock).acall(hangs, deadline=10.0)

    asyncio.run(clock.run(main()))
    assert started == [0.0]
    assert clock.now() == 10.0  # stopped at the deadline, not at the provider's 60 s


def test_async_retry_succeeds_after_failures():
    clock = ManualClock()
    attempts = []

    async def flaky():
        attempts.append(clock.now())
        await clock.asleep(0.1)
        if len(attempts) < 3:
            raise ConnectionError("nope")
        return "ok"

    policy = RetryPolicy(max_attempts=3, base_delay_s=1.0, full_jitter=False)
    result = asyncio.run(clock.run(Retrier(policy, clock).acall(flaky)))
    assert result == "ok"
    assert attempts == pytest.approx([0.0, 1.1, 3.2])


@pytest.mark.parametrize("kwargs,field", [({"max_attempts": 0}, "max_attempts"),
                                          ({"exponential_base": 0.5}, "exponential_base"),
                                          ({"deadline_s": 0}, "deadline_s"),
                                          ({"base_delay_s": -1}, "base_delay_s")])
def test_retry_policy_validates_fields(kwargs, field):
    with pytest.raises(ConfigError) as err:
        RetryPolicy(**kwargs)
    assert err.value.field == field


def test_huge_attempt_numbers_do_not_overflow_the_backoff():
    assert RetryPolicy(max_delay_s=7.0).backoff_cap_s(5000) == 7.0
