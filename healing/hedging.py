"""Hedging: when the primary is slow, ask a second provider too; the first good answer wins.

resilience4j's Hedge and Polly's hedging strategy, limited the way a clinical platform needs:
only where a service's policy declares it (``hedge: {provider, after}``,
:class:`~healing.limits.HedgeConfig`) and only for informational requests — a diagnostic or
prescriptive answer is never raced, because which of two providers answers a clinical
question must not depend on which came first.

The race, within the attempt's time (timeout and deadline):

1. the primary starts; if it has answered or failed within ``after``, that is the attempt;
2. otherwise the hedge provider is asked too, if its own circuit and bulkhead admit it;
3. the first good answer (no error, passes the strategy's integrity check) wins; the other
   call is cancelled (asyncio) or no longer waited for (sync: its worker thread runs on and
   keeps its bulkhead place until it ends). A call cut short counts in neither breaker; a
   finished one counts in its own.

Who won and what each breaker counts is decided once (:class:`_Race`); the asyncio and the
synchronous drivers only wait and cancel. Each lane counts requests that could be hedged,
hedges and hedge wins (``Lane.hedge_stats``; the hedge rate is in ``CallGate.snapshot()``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .admission import ADMITTED
from .errors import CallTimedOut
from .fallback import record_answer
from .limits import Lane, await_future, cancel_task, on_worker, wait_event
from .safety import ClinicalContext, OperationType

if TYPE_CHECKING:
    from .guard import Guard

__all__ = ["HedgeRun", "arace", "hedge_applies", "race"]


@dataclass(slots=True)
class HedgeRun:
    """How the race ended. ``primary_done``: the primary finished with ``value`` or
    ``error`` and its breaker permit is the caller's to record (else it was cut short here
    and its permit handed back). ``hedged``: the hedge's answer ``hedge_value`` won."""

    primary_done: bool
    value: Any = None
    error: BaseException | None = None
    hedged: bool = False
    hedge_value: Any = None


def hedge_applies(g: Guard, lane: Lane, service: str, context: ClinicalContext) -> bool:
    hedge = lane.policy.hedge
    return (hedge is not None and context.operation_type is OperationType.INFORMATIONAL
            and g.fallbacks.provider(service, hedge.provider) is not None)


class _Hedge:
    """The second call's permit, bulkhead place and outcome."""

    def __init__(self, g: Guard, lane: Lane, service: str) -> None:
        hedge = lane.policy.hedge
        assert hedge is not None  # hedge_applies() said so
        self.g, self.service, self.provider = g, service, hedge.provider
        self.fn = g.fallbacks.provider(service, hedge.provider)
        self.lane = g.gate.lane(service, hedge.provider) if g.gate is not None else None
        self.breaker = g.breakers.get(service, hedge.provider)
        self.permit: Any = None
        self.start = 0.0
        self._placed = False
        lane.hedge_stats[0] += 1  # a request that could have been hedged

    def admit(self, context: ClinicalContext) -> bool:
        now = self.g.clock.now()
        permit = self.breaker.allow(now)
        if not permit.allowed:
            return False
        if self.lane is not None:
            if self.lane.acquire(context.acuity, None, queue=False) != ADMITTED:  # type: ignore[arg-type]
                self.breaker.release(permit)
                return False
            self._placed = True
        self.permit, self.start = permit, now
        return True

    def free_place(self) -> None:
        if self._placed:
            self._placed = False
            self.lane.release()  # type: ignore[union-attr]

    def good(self, value: Any) -> bool:
        """Record the hedge's answer in its breaker; True if it may be served."""
        now = self.g.clock.now()
        strategy = self.g.fallbacks.get(self.service)
        return not record_answer(self.breaker, self.permit, strategy, value,
                                 now - self.start, now)[0]

    def failed(self, exc: BaseException) -> None:
        now = self.g.clock.now()
        self.breaker.on_exception(self.permit, exc, now - self.start, now)

    def cut_short(self) -> None:
        self.breaker.release(self.permit)


class _Race:
    """The race's bookkeeping, the same for both drivers: who won, what each breaker
    counts. :meth:`settle` takes each call as it finishes; :meth:`out_of_time` the end."""

    def __init__(self, hedge: _Hedge, lane: Lane, timeout: float | None, primary_permit: Any,
                 primary_breaker: Any) -> None:
        self.hedge, self.lane, self.timeout = hedge, lane, timeout
        self.primary_permit, self.primary_breaker = primary_permit, primary_breaker
        self.primary_error: BaseException | None = None

    def settle(self, is_hedge: bool, call: Any, other_running: bool) -> HedgeRun | None:
        """``call`` (an asyncio or a concurrent future) finished: the race's end, or None
        while the other call may still answer. The other call, if running, is the driver's
        to cancel; its breaker permit is handed back here."""
        exc = call.exception()
        if is_hedge:
            if exc is None and self.hedge.good(call.result()):
                self.lane.hedge_stats[2] += 1
                if other_running:  # the primary, cut short: counts in neither breaker
                    self.primary_breaker.release(self.primary_permit)
                    return HedgeRun(False, hedged=True, hedge_value=call.result())
                return HedgeRun(True, None, self.primary_error, True, call.result())
            if exc is not None:
                self.hedge.failed(exc)
            return None if other_running else HedgeRun(True, None, self.primary_error)
        if exc is None:
            if other_running:
                self.hedge.cut_short()
            return HedgeRun(True, call.result())
        self.primary_error = exc
        return None if other_running else HedgeRun(True, None, exc)

    def out_of_time(self, primary_running: bool, hedge_running: bool) -> HedgeRun:
        if hedge_running:
            self.hedge.cut_short()
        if primary_running:
            return HedgeRun(True, None, _timed_out(self.lane, self.timeout))
        return HedgeRun(True, None, self.primary_error)


def _timed_out(lane: Lane, timeout: float | None) -> CallTimedOut:
    return CallTimedOut(lane.service, lane.provider, timeout or 0.0)


def _finished(call: Any) -> HedgeRun:
    """The primary finished before any hedge was asked (either kind of future)."""
    exc = call.exception()
    return HedgeRun(True, None, exc) if exc is not None else HedgeRun(True, call.result())


# -- asyncio ------------------------------------------------------------------------------------

async def arace(g: Guard, lane: Lane, service: str, awaitable: Any, args: tuple[Any, ...],
                kwargs: Mapping[str, Any], context: ClinicalContext, timeout: float | None,
                primary_permit: Any, primary_breaker: Any) -> HedgeRun:
    """Race the primary's ``awaitable`` against the hedge provider (see the module doc)."""
    clock = g.clock
    end = None if timeout is None else clock.now() + timeout

    def left() -> float:
        return float("inf") if end is None else max(0.0, end - clock.now())

    primary = asyncio.ensure_future(awaitable)
    after = min(lane.policy.hedge.after_s, left())  # type: ignore[union-attr]
    hedge = _Hedge(g, lane, service)
    if await await_future(clock, primary, after) or not hedge.admit(context):
        if not await await_future(clock, primary, left()):
            await cancel_task(primary)
            return HedgeRun(True, None, _timed_out(lane, timeout))
        return _finished(primary)
    lane.hedge_stats[1] += 1
    second = asyncio.ensure_future(_call(hedge.fn, args, kwargs))  # type: ignore[arg-type]
    second.add_done_callback(lambda _: hedge.free_place())
    state = _Race(hedge, lane, timeout, primary_permit, primary_breaker)
    pending: set[asyncio.Future[Any]] = {primary, second}
    while pending:
        waiting = asyncio.ensure_future(asyncio.wait(pending,
                                                     return_when=asyncio.FIRST_COMPLETED))
        if not await await_future(clock, waiting, left()):
            waiting.cancel()
            break
        for task in waiting.result()[0]:
            pending.discard(task)
            run = state.settle(task is second, task, bool(pending))
            if run is not None:
                for other in pending:
                    await cancel_task(other)
                return run
    run = state.out_of_time(primary in pending, second in pending)
    for task in pending:
        await cancel_task(task)
    return run


async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    value = fn(*args, **kwargs)
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        value = await value
    return value


# -- synchronous --------------------------------------------------------------------------------

def race(g: Guard, lane: Lane, service: str, fn: Callable[..., Any], args: tuple[Any, ...],
         kwargs: Mapping[str, Any], context: ClinicalContext, timeout: float | None,
         primary_permit: Any, primary_breaker: Any) -> HedgeRun:
    """The synchronous race: both calls on worker threads. The primary's bulkhead place is
    freed when its thread ends (the caller must not free it again)."""
    clock = g.clock
    end = None if timeout is None else clock.now() + timeout

    def left() -> float:
        return float("inf") if end is None else max(0.0, end - clock.now())

    changed = threading.Event()
    primary: Future[Any] = on_worker(fn, args, kwargs)
    primary.add_done_callback(lambda _: lane.release())
    primary.add_done_callback(lambda _: changed.set())
    after = min(lane.policy.hedge.after_s, left())  # type: ignore[union-attr]
    hedge = _Hedge(g, lane, service)
    if wait_event(clock, changed, after) or not hedge.admit(context):
        if not primary.done() and not wait_event(clock, changed, left()):
            return HedgeRun(True, None, _timed_out(lane, timeout))
        return _finished(primary)
    lane.hedge_stats[1] += 1
    second: Future[Any] = on_worker(hedge.fn, args, kwargs)  # type: ignore[arg-type]
    second.add_done_callback(lambda _: hedge.free_place())
    second.add_done_callback(lambda _: changed.set())
    state = _Race(hedge, lane, timeout, primary_permit, primary_breaker)
    pending = {primary, second}
    while pending:
        changed.clear()
        done = [f for f in pending if f.done()]
        if not done:
            if not wait_event(clock, changed, left()):
                break
            continue
        for fut in done:
            pending.discard(fut)
            run = state.settle(fut is second, fut, bool(pending))
            if run is not None:  # a call still running is no longer waited for
                return run
    return state.out_of_time(primary in pending, second in pending)
