"""The guard's bounded call path: deadline, breaker, admission, timeout and budgeted retries.

The guard takes this path when the call's provider has a :class:`~healing.limits.CallPolicy`
or the request carries a deadline; every other call keeps the plain path in
:mod:`healing.guard`. In order, for each attempt:

1. a deadline already passed → no call; the fallback tiers (those that answer at once) answer;
2. the breaker's permit (an open circuit → fallback, as always);
3. a place in the provider's bulkhead (:mod:`healing.admission`): admitted, queued for at
   most the queue timeout (and the deadline), or shed → the fallback tiers, like an open
   circuit; life-critical requests are never shed;
4. the operation, within ``min(timeout, deadline - now)``; a timeout is a failure for the
   breaker (and the latency the adaptive limit learns from);
   With a ``hedge`` in the policy, an informational request's first attempt races the
   primary against the hedge provider after ``after`` (:mod:`healing.hedging`); a hedge
   answer is served as tier ``hedge:<provider>``.
5. after a failure, another attempt if the policy allows retries, the service's retry budget
   has one (life-critical retries are counted, never refused), the breaker admits it and the
   deadline leaves the provider's typical latency.

Shed, deadline and timeout failures reach the fallback plan and the audit trail like any
other failure, with error kinds ``shed``, ``deadline`` and ``CallTimedOut``.

The decisions are made once, in :func:`_plan`, a generator that yields what it needs done
(take a bulkhead place, run an attempt) to a synchronous or an asyncio driver, as
:func:`healing.fallback.plan_fallback` does for the tiers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, NamedTuple

from .admission import ADMITTED
from .errors import CallShed, CallTimedOut, CircuitOpenError
from .fallback import FallbackResult
from .hedging import HedgeRun, arace, hedge_applies, race
from .limits import CallPolicy, Lane, abounded, bounded
from .safety import ClinicalContext

if TYPE_CHECKING:
    from .guard import Guard

__all__ = ["acall_limited", "call_limited"]


def _shed(service: str, provider: str | None, context: ClinicalContext,
          reason: str) -> CallShed:
    return CallShed(service, provider, context.acuity.label, reason)  # type: ignore[union-attr]


class _Acquire(NamedTuple):
    """Take a place in the lane's bulkhead (waiting in its queue when ``queue``)."""

    queue: bool


class _Attempt(NamedTuple):
    """Run the operation once, within ``timeout``; the driver answers with an _Outcome."""

    permit: Any
    breaker: Any
    timeout: float | None
    hedged: bool  # race it against the policy's hedge provider


class _Outcome(NamedTuple):
    result: Any = None
    error: Exception | None = None
    won: HedgeRun | None = None  # the hedge's answer won the race


class _Failed(NamedTuple):
    """The plan's end when nothing may be served from the primary: the failure the
    fallback tiers get, with the tier to start at."""

    error: BaseException
    kind: str
    t0: float
    start: int = 0


_Plan = Generator[_Acquire | _Attempt, Any, FallbackResult | _Failed]


def _plan(g: Guard, lane: Lane | None, service: str, context: ClinicalContext,
          provider: str | None, cache_key: str | None, deadline: float | None) -> _Plan:
    """Every decision of the bounded path, once, for the sync and the async driver."""
    clock = g.clock
    t0 = clock.now()
    if g.routes.routes:
        routed = g._routed(service, context)
        if routed is not None:
            return _Failed(routed[0], "routed", t0, routed[1])
    if deadline is not None and deadline <= t0:
        return _Failed(_shed(service, provider, context, "its deadline had passed"),
                       "deadline", t0)
    breaker = g.breakers.get(service, provider, t0)
    if lane is not None and lane.budget is not None:
        lane.budget.request(t0)
    attempt = 0
    last: _Failed | None = None
    while True:
        start = clock.now()
        permit = breaker.allow(start)
        if not permit.allowed:
            return last or _Failed(CircuitOpenError(breaker.name, permit.state,
                                                    permit.retry_after_s(start)),  # type: ignore[union-attr]
                                   "rejected", t0)
        if lane is not None:
            verdict = yield _Acquire(attempt == 0)
            if verdict != ADMITTED:
                breaker.release(permit)  # type: ignore[arg-type]
                return last or _Failed(_shed(service, provider, context, verdict), "shed", t0)
            start = clock.now()  # a queue wait is not the provider's latency
            in_flight = lane.in_flight
            timeout = lane.timeout(start, deadline)
            hedged = attempt == 0 and lane.policy.hedge is not None \
                and hedge_applies(g, lane, service, context)
        else:
            in_flight, hedged = 0, False
            timeout = deadline - start if deadline is not None else None
        out: _Outcome = yield _Attempt(permit, breaker, timeout, hedged)
        t1 = clock.now()
        exc = out.error
        if exc is not None:
            took = timeout if isinstance(exc, CallTimedOut) else t1 - start
            breaker.on_exception(permit, exc, took, t1)  # type: ignore[arg-type]
            if lane is not None:
                lane.observe(took, in_flight, False, t1,  # type: ignore[arg-type]
                             isinstance(exc, CallTimedOut))
            last = _Failed(exc, type(exc).__name__, t0)
            attempt += 1
            if lane is not None and lane.may_retry(attempt, t1, deadline, context.acuity):
                # the request's outcome will not show this failure if the retry answers
                g._retried(service)
                continue
            return last
        if out.won is not None:
            return _hedge_served(g, lane, out.won, service, context, cache_key, breaker,
                                 permit, start, t0)
        if lane is not None:
            lane.observe(t1 - start, in_flight, True, t1)
        served = g._primary_result(service, provider, context, cache_key, breaker,
                                   permit, out.result, start)
        if type(served) is FallbackResult:
            return served
        return _Failed(served, "integrity", t0)


def call_limited(g: Guard, lane: Lane | None, service: str, fn: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any], context: ClinicalContext,
                 provider: str | None, cache_key: str | None,
                 deadline: float | None) -> FallbackResult:
    """:meth:`Guard.call` with ``lane``'s policy and the request's deadline."""
    plan = _plan(g, lane, service, context, provider, cache_key, deadline)
    try:
        step = next(plan)
        while True:
            if type(step) is _Acquire:
                reply: Any = lane.acquire(context.acuity, deadline,  # type: ignore[union-attr,arg-type]
                                          queue=step.queue)
            else:
                reply = _attempt_sync(g, lane, service, fn, args, kwargs, context, provider,
                                      step)
            step = plan.send(reply)
    except StopIteration as stop:
        end = stop.value
    if type(end) is not _Failed:
        return end  # type: ignore[no-any-return]
    return g._fail_sync(service, provider, context, cache_key, args, kwargs,
                        end.error, end.kind, end.t0, end.start, deadline=deadline)


async def acall_limited(g: Guard, lane: Lane | None, service: str, fn: Callable[..., Any],
                        args: tuple[Any, ...], kwargs: dict[str, Any],
                        context: ClinicalContext, provider: str | None,
                        cache_key: str | None, deadline: float | None) -> FallbackResult:
    """:meth:`Guard.acall` with ``lane``'s policy and the request's deadline; a timed-out
    awaitable is cancelled (a sync ``fn`` blocks the loop and cannot be timed out here)."""
    plan = _plan(g, lane, service, context, provider, cache_key, deadline)
    try:
        step = next(plan)
        while True:
            if type(step) is _Acquire:
                reply: Any = await lane.aacquire(context.acuity, deadline) if step.queue \
                    else lane.acquire(context.acuity, deadline, queue=False)  # type: ignore[union-attr,arg-type]
            else:
                reply = await _attempt_async(g, lane, service, fn, args, kwargs, context,
                                             provider, step)
            step = plan.send(reply)
    except StopIteration as stop:
        end = stop.value
    if type(end) is not _Failed:
        return end  # type: ignore[no-any-return]
    return await g._fail_async(service, provider, context, cache_key, args, kwargs,
                               end.error, end.kind, end.t0, end.start, deadline=deadline)


def _attempt_sync(g: Guard, lane: Lane | None, service: str, fn: Callable[..., Any],
                  args: tuple[Any, ...], kwargs: dict[str, Any], context: ClinicalContext,
                  provider: str | None, step: _Attempt) -> _Outcome:
    timeout = step.timeout
    try:
        if lane is None:
            return _Outcome(fn(*args, **kwargs) if timeout is None else bounded(
                _deadline_lane(g, service, provider), fn, args, kwargs, timeout, _nothing))
        if step.hedged:  # the race frees the primary's place when its thread ends
            return _race_outcome(race(g, lane, service, fn, args, kwargs, context, timeout,
                                      step.permit, step.breaker))
        if timeout is not None:
            return _Outcome(bounded(lane, fn, args, kwargs, timeout, lane.release))
        try:
            return _Outcome(fn(*args, **kwargs))
        finally:
            lane.release()
    except Exception as exc:
        return _Outcome(error=exc)
    except BaseException:
        step.breaker.release(step.permit)
        raise


async def _attempt_async(g: Guard, lane: Lane | None, service: str, fn: Callable[..., Any],
                         args: tuple[Any, ...], kwargs: dict[str, Any],
                         context: ClinicalContext, provider: str | None,
                         step: _Attempt) -> _Outcome:
    timeout = step.timeout
    try:
        try:
            result = fn(*args, **kwargs)
            if not inspect.isawaitable(result):
                return _Outcome(result)
            if step.hedged:
                return _race_outcome(await arace(g, lane, service, result, args, kwargs,  # type: ignore[arg-type]
                                                 context, timeout, step.permit, step.breaker))
            if timeout is not None:
                result = abounded(lane if lane is not None
                                  else _deadline_lane(g, service, provider), result, timeout)
            return _Outcome(await result)
        finally:
            if lane is not None:
                lane.release()
    except Exception as exc:
        return _Outcome(error=exc)
    except BaseException:  # cancelled: the trial permit goes back, nothing is counted
        step.breaker.release(step.permit)
        raise


def _nothing() -> None:
    return None


def _race_outcome(run: HedgeRun) -> _Outcome:
    """The primary's answer or error, or the run the hedge won."""
    if run.hedged:
        return _Outcome(won=run)
    if run.error is not None:
        return _Outcome(error=run.error)  # type: ignore[arg-type]
    return _Outcome(run.value)


def _hedge_served(g: Guard, lane: Lane | None, run: HedgeRun, service: str,
                  context: ClinicalContext, cache_key: str | None, breaker: Any, permit: Any,
                  start: float, t0: float) -> FallbackResult:
    """The hedge's answer won (its checks passed in the race)."""
    t1 = g.clock.now()
    if run.primary_done and run.error is not None:  # the primary failed first: it counts
        breaker.on_exception(permit, run.error, t1 - start, t1)
    provider = lane.policy.hedge.provider  # type: ignore[union-attr]
    return g._answered(service, provider, f"hedge:{provider}", context, cache_key,
                       g.fallbacks.get(service), run.hedge_value, t0, t1)


def _deadline_lane(g: Guard, service: str, provider: str | None) -> Lane:
    # A request with a deadline to a provider without a policy: bounded by the deadline only.
    return Lane(service, provider, CallPolicy(), g.clock, None)
