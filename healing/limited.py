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
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .admission import ADMITTED
from .errors import CallShed, CallTimedOut, CircuitOpenError
from .fallback import FallbackResult
from .hedging import HedgeRun, arace, hedge_applies, race
from .limits import CallPolicy, Lane, abounded, bounded
from .outcome import OutcomeRecord
from .safety import ClinicalContext

if TYPE_CHECKING:
    from .guard import Guard

__all__ = ["acall_limited", "call_limited"]


def _shed(service: str, provider: str | None, context: ClinicalContext,
          reason: str) -> CallShed:
    return CallShed(service, provider, context.acuity.label, reason)  # type: ignore[union-attr]


def call_limited(g: Guard, lane: Lane | None, service: str, fn: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any], context: ClinicalContext,
                 provider: str | None, cache_key: str | None,
                 deadline: float | None) -> FallbackResult:
    """:meth:`Guard.call` with ``lane``'s policy and the request's deadline."""
    clock = g.clock
    t0 = clock.now()
    fail = g._fail_sync
    if g.routes.routes:
        routed = g._routed(service, context)
        if routed is not None:
            return fail(service, provider, context, cache_key, args, kwargs, routed[0],
                        "routed", t0, routed[1], deadline=deadline)
    if deadline is not None and deadline <= t0:
        return fail(service, provider, context, cache_key, args, kwargs,
                    _shed(service, provider, context, "its deadline had passed"),
                    "deadline", t0, deadline=deadline)
    breaker = g.breakers.get(service, provider, t0)
    if lane is not None and lane.budget is not None:
        lane.budget.request(t0)
    attempt = 0
    last: tuple[BaseException, str] | None = None
    while True:
        start = clock.now()
        permit = breaker.allow(start)
        if not permit.allowed:
            error: BaseException = CircuitOpenError(breaker.name, permit.state,
                                                    permit.retry_after_s(start))  # type: ignore[union-attr]
            exc, kind = last if last is not None else (error, "rejected")
            return fail(service, provider, context, cache_key, args, kwargs, exc, kind, t0,
                        deadline=deadline)
        if lane is not None:
            verdict = lane.acquire(context.acuity, deadline, queue=attempt == 0)  # type: ignore[arg-type]
            if verdict != ADMITTED:
                breaker.release(permit)  # type: ignore[arg-type]
                exc, kind = last if last is not None else (
                    _shed(service, provider, context, verdict), "shed")
                return fail(service, provider, context, cache_key, args, kwargs, exc, kind,
                            t0, deadline=deadline)
            start = clock.now()  # a queue wait is not the provider's latency
            in_flight = lane.in_flight
            timeout = lane.timeout(start, deadline)
        else:
            in_flight, timeout = 0, (deadline - start if deadline is not None else None)
        won = None
        try:
            if lane is None:
                result = fn(*args, **kwargs) if timeout is None else bounded(
                    _deadline_lane(g, service, provider), fn, args, kwargs, timeout, _nothing)
            elif attempt == 0 and lane.policy.hedge is not None \
                    and hedge_applies(g, lane, service, context):
                run = race(g, lane, service, fn, args, kwargs, context, timeout, permit,
                           breaker)  # frees the primary's place when its thread ends
                result, won = _race_result(run)
            elif timeout is None:
                try:
                    result = fn(*args, **kwargs)
                finally:
                    lane.release()
            else:
                result = bounded(lane, fn, args, kwargs, timeout, lane.release)
        except Exception as exc:
            t1 = clock.now()
            took = timeout if isinstance(exc, CallTimedOut) else t1 - start
            breaker.on_exception(permit, exc, took, t1)  # type: ignore[arg-type]
            if lane is not None:
                lane.observe(took, in_flight, False, t1,  # type: ignore[arg-type]
                             isinstance(exc, CallTimedOut))
            last = (exc, type(exc).__name__)
            attempt += 1
            if lane is not None and lane.may_retry(attempt, t1, deadline, context.acuity):
                continue
            return fail(service, provider, context, cache_key, args, kwargs, exc,
                        last[1], t0, deadline=deadline)
        except BaseException:
            breaker.release(permit)  # type: ignore[arg-type]
            raise
        if won is not None:
            return _hedge_served(g, lane, won, service, context, cache_key, breaker, permit,
                                 start, t0)
        if lane is not None:
            t1 = clock.now()
            lane.observe(t1 - start, in_flight, True, t1)
        served = g._primary_result(service, provider, context, cache_key, breaker,
                                   permit, result, start)
        if type(served) is FallbackResult:
            return served
        return fail(service, provider, context, cache_key, args, kwargs, served, "integrity",
                    t0, deadline=deadline)


async def acall_limited(g: Guard, lane: Lane | None, service: str, fn: Callable[..., Any],
                        args: tuple[Any, ...], kwargs: dict[str, Any],
                        context: ClinicalContext, provider: str | None,
                        cache_key: str | None, deadline: float | None) -> FallbackResult:
    """:meth:`Guard.acall` with ``lane``'s policy and the request's deadline; a timed-out
    awaitable is cancelled (a sync ``fn`` blocks the loop and cannot be timed out here)."""
    clock = g.clock
    t0 = clock.now()
    fail = g._fail_async
    if g.routes.routes:
        routed = g._routed(service, context)
        if routed is not None:
            return await fail(service, provider, context, cache_key, args, kwargs, routed[0],
                              "routed", t0, routed[1], deadline=deadline)
    if deadline is not None and deadline <= t0:
        return await fail(service, provider, context, cache_key, args, kwargs,
                          _shed(service, provider, context, "its deadline had passed"),
                          "deadline", t0, deadline=deadline)
    breaker = g.breakers.get(service, provider, t0)
    if lane is not None and lane.budget is not None:
        lane.budget.request(t0)
    attempt = 0
    last: tuple[BaseException, str] | None = None
    while True:
        start = clock.now()
        permit = breaker.allow(start)
        if not permit.allowed:
            error: BaseException = CircuitOpenError(breaker.name, permit.state,
                                                    permit.retry_after_s(start))  # type: ignore[union-attr]
            exc, kind = last if last is not None else (error, "rejected")
            return await fail(service, provider, context, cache_key, args, kwargs, exc, kind,
                              t0, deadline=deadline)
        if lane is not None:
            verdict = await lane.aacquire(context.acuity, deadline) if attempt == 0 \
                else lane.acquire(context.acuity, deadline, queue=False)  # type: ignore[arg-type]
            if verdict != ADMITTED:
                breaker.release(permit)  # type: ignore[arg-type]
                exc, kind = last if last is not None else (
                    _shed(service, provider, context, verdict), "shed")
                return await fail(service, provider, context, cache_key, args, kwargs, exc,
                                  kind, t0, deadline=deadline)
            start = clock.now()
            in_flight = lane.in_flight
            timeout = lane.timeout(start, deadline)
        else:
            in_flight, timeout = 0, (deadline - start if deadline is not None else None)
        won = None
        try:
            try:
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result) and attempt == 0 and lane is not None \
                        and lane.policy.hedge is not None \
                        and hedge_applies(g, lane, service, context):
                    run = await arace(g, lane, service, result, args, kwargs, context,
                                      timeout, permit, breaker)
                    result, won = _race_result(run)
                elif inspect.isawaitable(result):
                    result = await (result if timeout is None else abounded(
                        lane if lane is not None else _deadline_lane(g, service, provider),
                        result, timeout))
            finally:
                if lane is not None:
                    lane.release()
        except Exception as exc:
            t1 = clock.now()
            took = timeout if isinstance(exc, CallTimedOut) else t1 - start
            breaker.on_exception(permit, exc, took, t1)  # type: ignore[arg-type]
            if lane is not None:
                lane.observe(took, in_flight, False, t1,  # type: ignore[arg-type]
                             isinstance(exc, CallTimedOut))
            last = (exc, type(exc).__name__)
            attempt += 1
            if lane is not None and lane.may_retry(attempt, t1, deadline, context.acuity):
                continue
            return await fail(service, provider, context, cache_key, args, kwargs, exc,
                              last[1], t0, deadline=deadline)
        except BaseException:  # cancelled: the trial permit goes back, nothing is counted
            breaker.release(permit)  # type: ignore[arg-type]
            raise
        if won is not None:
            return _hedge_served(g, lane, won, service, context, cache_key, breaker, permit,
                                 start, t0)
        if lane is not None:
            t1 = clock.now()
            lane.observe(t1 - start, in_flight, True, t1)
        served = g._primary_result(service, provider, context, cache_key, breaker,
                                   permit, result, start)
        if type(served) is FallbackResult:
            return served
        return await fail(service, provider, context, cache_key, args, kwargs, served,
                          "integrity", t0, deadline=deadline)


def _nothing() -> None:
    return None


def _race_result(run: HedgeRun) -> tuple[Any, HedgeRun | None]:
    """The primary's answer (or its error, raised), or the run the hedge won."""
    if run.hedged:
        return None, run
    if run.error is not None:
        raise run.error
    return run.value, None


def _hedge_served(g: Guard, lane: Lane | None, run: HedgeRun, service: str,
                  context: ClinicalContext, cache_key: str | None, breaker: Any, permit: Any,
                  start: float, t0: float) -> FallbackResult:
    """The hedge's answer won (it passed the integrity check in the race)."""
    clock = g.clock
    t1 = clock.now()
    if run.primary_done and run.error is not None:  # the primary failed first: it counts
        breaker.on_exception(permit, run.error, t1 - start, t1)
    hedge = lane.policy.hedge  # type: ignore[union-attr]
    strategy = g.fallbacks.get(service)
    check = strategy.integrity_check if strategy is not None else None
    if cache_key is not None and strategy is not None and strategy.has_cache_tier:
        g.cache.put(g.cache.key_for(service, context, cache_key), run.hedge_value, t1)
    tier = f"hedge:{hedge.provider}"  # type: ignore[union-attr]
    g._emit(OutcomeRecord(service, hedge.provider, True, t1 - t0, None, tier,  # type: ignore[union-attr]
                          None, context.operation_type, context.criticality, clock.wall()))
    return FallbackResult(run.hedge_value, tier, 0, None, None, None, check is not None)


def _deadline_lane(g: Guard, service: str, provider: str | None) -> Lane:
    # A request with a deadline to a provider without a policy: bounded by the deadline only.
    return Lane(service, provider, CallPolicy(), g.clock, None)
