"""Retry: deciding (pure) kept apart from acting (a sync and an async driver).

:meth:`Retrier.plan` looks at the attempt that just ended and returns what to do next —
:class:`DoSleep`, :class:`GiveUp` or ``None`` (done) — the way tenacity's ``iter()`` does;
the drivers only carry that out on the injected clock. A deadline (the policy's own budget,
or a tighter one from the caller such as a workflow timeout) is never overrun: no backoff is
started that would end past it, and the async driver also bounds each attempt by the time
left. A synchronous attempt cannot be interrupted in Python; if one ends past the deadline,
retrying stops there.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn, TypeVar

from .clock import Clock, SystemClock
from .config import RetryPolicy
from .errors import DeadlineExceeded, RetryExhausted
from .outcome import Outcome

__all__ = ["DoSleep", "GiveUp", "Retrier", "bounded"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DoSleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str
    deadline: bool = False


class Retrier:
    """Runs an operation under a :class:`RetryPolicy`.

    Args:
        policy: when and how often to retry.
        clock: time for backoff and deadlines.
        rng: jitter source; pass ``random.Random(seed)`` for reproducible runs.
    """

    def __init__(self, policy: RetryPolicy | None = None, clock: Clock | None = None,
                 rng: random.Random | None = None) -> None:
        self.policy = policy if policy is not None else RetryPolicy()
        self.clock = clock if clock is not None else SystemClock()
        self.rng = rng if rng is not None else random.Random()

    def should_retry(self, outcome: Outcome) -> bool:
        p = self.policy
        if outcome.error is not None:
            return isinstance(outcome.error, Exception) and p.retry_on_exception(outcome.error)
        return p.retry_on_result is not None and bool(p.retry_on_result(outcome.value))

    def plan(self, attempt: int, outcome: Outcome, now: float,
             deadline: float | None) -> DoSleep | GiveUp | None:
        """What to do after attempt number ``attempt`` (1-based) ended with ``outcome``."""
        if not self.should_retry(outcome):
            return None
        if deadline is not None and now >= deadline:
            return GiveUp("the deadline passed during the attempt", deadline=True)
        if attempt >= self.policy.max_attempts:
            return GiveUp(f"{attempt} of {self.policy.max_attempts} attempts used")
        cap = self.policy.backoff_cap_s(attempt)
        delay = self.rng.uniform(0.0, cap) if self.policy.full_jitter else cap
        if deadline is not None and now + delay >= deadline:
            return GiveUp(f"a {delay:.3f} s backoff would overrun the deadline", deadline=True)
        return DoSleep(delay)

    def _deadline(self, start: float, deadline: float | None) -> float | None:
        own = None if self.policy.deadline_s is None else start + self.policy.deadline_s
        if own is None:
            return deadline
        return own if deadline is None else min(own, deadline)

    def call(self, fn: Callable[..., T], *args: Any, deadline: float | None = None,
             **kwargs: Any) -> T:
        """Call ``fn`` until it succeeds or the policy gives up.

        Args:
            deadline: absolute ``clock.now()`` time not to overrun, in addition to the
                policy's ``deadline_s``.

        Raises:
            RetryExhausted / DeadlineExceeded: with the last outcome; ``__cause__`` is the
                last exception, if the last attempt raised.
        """
        clock = self.clock
        limit = self._deadline(clock.now(), deadline)
        attempt = 0
        while True:
            attempt += 1
            t0 = clock.now()
            try:
                value, error = fn(*args, **kwargs), None
            except Exception as exc:
                value, error = None, exc
            wait = self._settle(attempt, value, error, t0, limit)
            if type(wait) is _Return:
                return wait.value  # type: ignore[no-any-return]
            clock.sleep(wait)  # type: ignore[arg-type]

    async def acall(self, fn: Callable[..., Awaitable[T]], *args: Any,
                    deadline: float | None = None, **kwargs: Any) -> T:
        """The async driver of :meth:`call`; each attempt is bounded by the time left."""
        clock = self.clock
        limit = self._deadline(clock.now(), deadline)
        attempt = 0
        while True:
            attempt += 1
            t0 = clock.now()
            try:
                aw = fn(*args, **kwargs)
                value = await (aw if limit is None else bounded(clock, aw, limit - t0))
                error = None
            except Exception as exc:
                value, error = None, exc
            wait = self._settle(attempt, value, error, t0, limit)
            if type(wait) is _Return:
                return wait.value  # type: ignore[no-any-return]
            await clock.asleep(wait)  # type: ignore[arg-type]

    def _settle(self, attempt: int, value: Any, error: Exception | None, t0: float,
                limit: float | None) -> float | _Return:
        """After an attempt: the value to return, the wait before the next, or raise."""
        now = self.clock.now()
        outcome = Outcome(value, error, now - t0)
        step = self.plan(attempt, outcome, now, limit)
        if step is None:
            if error is not None:
                raise error
            return _Return(value)
        if isinstance(step, GiveUp):
            _give_up(attempt, step, outcome)
        return step.seconds  # type: ignore[union-attr]


class _Return(NamedTuple):
    value: Any


def _give_up(attempt: int, step: GiveUp, outcome: Outcome) -> NoReturn:
    err = (DeadlineExceeded if step.deadline else RetryExhausted)(attempt, step.reason, outcome)
    raise err from outcome.error


async def bounded(clock: Clock, aw: Awaitable[T], budget_s: float) -> T:
    """Await ``aw`` for at most ``budget_s`` on ``clock``; raises ``TimeoutError`` past it.

    Built on ``clock.asleep`` rather than ``asyncio.wait_for`` so the same code honours a
    simulated clock.
    """
    if budget_s <= 0:
        if asyncio.iscoroutine(aw):
            aw.close()
        raise TimeoutError("no time left for the attempt")
    task = asyncio.ensure_future(aw)
    timer = asyncio.ensure_future(clock.asleep(budget_s))
    try:
        done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        timer.cancel()
        raise
    if task in done:
        timer.cancel()
        return task.result()
    task.cancel()
    # The cancelled attempt's own ending (CancelledError, or an error on the way out) is not
    # the story: the timeout is.
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise TimeoutError(f"attempt did not finish within {budget_s:.3f} s")
