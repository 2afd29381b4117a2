"""Hedging: when the primary is slow, ask a second provider too; the first good answer wins.

resilience4j's Hedge and Polly's hedging strategy, limited the way a clinical platform needs:
only where a service's policy declares it (``hedge: {provider, after}``) and only for
informational requests — a diagnostic or prescriptive answer is never raced, because which
of two providers answers a clinical question must not depend on which came first.

The race, within the attempt's time (timeout and deadline):

1. the primary starts; if it has answered or failed within ``after``, that is the attempt;
2. otherwise the hedge provider is asked too, if its own circuit and bulkhead admit it;
3. the first good answer (no error, passes the strategy's integrity check) wins; the other
   call is cancelled (asyncio) or no longer waited for (sync: its worker thread runs on and
   keeps its bulkhead place until it ends). A call cut short counts in neither breaker; a
   finished one counts in its own.

Each lane counts requests that could be hedged, hedges and hedge wins (``Lane.hedge_stats``;
the hedge rate is in ``CallGate.snapshot()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .admission import ADMITTED
from .config import check_positive
from .errors import CallTimedOut, ConfigError
from .safety import ClinicalContext, OperationType
from .window import FAILED

if TYPE_CHECKING:
    from .guard import Guard
    from .limits import Lane

__all__ = ["HedgeConfig", "HedgeRun", "arace", "hedge_applies", "race"]


@dataclass(frozen=True, slots=True)
class HedgeConfig:
    """Ask ``provider`` too when the primary has not answered within ``after_s``."""

    provider: str
    after_s: float

    def __post_init__(self) -> None:
        if not (isinstance(self.provider, str) and self.provider):
            raise ConfigError("provider", self.provider, "must name one of the service's "
                              "providers (asked too when the primary is slow)")
        check_positive("after_s", self.after_s)


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
        assert hedge is not None
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
        check = strategy.integrity_check if strategy is not None else None
        code = self.breaker.classify_result(value, now - self.start)
        if check is not None and check.reason(value) is not None:
            code |= FAILED
        self.breaker.record(self.permit, code, now)
        return not code & FAILED

    def failed(self, exc: BaseException) -> None:
        now = self.g.clock.now()
        self.breaker.on_exception(self.permit, exc, now - self.start, now)

    def cut_short(self) -> None:
        self.breaker.release(self.permit)


def _timed_out(lane: Lane, timeout: float | None) -> CallTimedOut:
    return CallTimedOut(lane.service, lane.provider, timeout or 0.0)


# -- asyncio ------------------------------------------------------------------------------------

async def arace(g: Guard, lane: Lane, service: str, awaitable: Any, args: tuple[Any, ...],
                kwargs: Mapping[str, Any], context: ClinicalContext, timeout: float | None,
                primary_permit: Any, primary_breaker: Any) -> HedgeRun:
    """Race the primary's ``awaitable`` against the hedge provider (see the module doc)."""
    from .limits import _await_future  # noqa: PLC0415 - limits imports this module

    clock = g.clock
    end = None if timeout is None else clock.now() + timeout

    def left() -> float:
        return float("inf") if end is None else max(0.0, end - clock.now())

    primary = asyncio.ensure_future(awaitable)
    after = min(lane.policy.hedge.after_s, left())  # type: ignore[union-attr]
    hedge = _Hedge(g, lane, service)
    if await _await_future(clock, primary, after) or not hedge.admit(context):
        if not primary.done() and not await _await_future(clock, primary, left()):
            await _cancel(primary)
            return HedgeRun(True, None, _timed_out(lane, timeout))
        return _primary_run(primary)
    lane.hedge_stats[1] += 1
    second = asyncio.ensure_future(_call(hedge.fn, args, kwargs))  # type: ignore[arg-type]
    second.add_done_callback(lambda _: hedge.free_place())
    pending: set[asyncio.Future[Any]] = {primary, second}
    primary_error: BaseException | None = None
    while pending:
        waiting = asyncio.ensure_future(asyncio.wait(pending,
                                                     return_when=asyncio.FIRST_COMPLETED))
        if not await _await_future(clock, waiting, left()):
            waiting.cancel()
            break
        for task in waiting.result()[0]:
            pending.discard(task)
            exc = task.exception()
            if task is second:
                if exc is None and hedge.good(task.result()):
                    lane.hedge_stats[2] += 1
                    if primary in pending:
                        await _cancel(primary)
                        primary_breaker.release(primary_permit)
                        return HedgeRun(False, hedged=True, hedge_value=task.result())
                    return HedgeRun(True, None, primary_error, True, task.result())
                if exc is not None:
                    hedge.failed(exc)
            elif exc is None:
                if second in pending:
                    await _cancel(second)
                    hedge.cut_short()
                return HedgeRun(True, task.result())
            else:
                primary_error = exc
    if second in pending:  # out of time
        await _cancel(second)
        hedge.cut_short()
    if primary in pending:
        await _cancel(primary)
        return HedgeRun(True, None, _timed_out(lane, timeout))
    return HedgeRun(True, None, primary_error)


def _primary_run(primary: asyncio.Future[Any]) -> HedgeRun:
    exc = primary.exception()
    return HedgeRun(True, None, exc) if exc is not None else HedgeRun(True, primary.result())


async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    value = fn(*args, **kwargs)
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        value = await value
    return value


async def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):  # its cancellation, or its own last error
        await task


# -- synchronous --------------------------------------------------------------------------------

def race(g: Guard, lane: Lane, service: str, fn: Callable[..., Any], args: tuple[Any, ...],
         kwargs: Mapping[str, Any], context: ClinicalContext, timeout: float | None,
         primary_permit: Any, primary_breaker: Any) -> HedgeRun:
    """The synchronous race: both calls on worker threads. The primary's bulkhead place is
    freed when its thread ends (the caller must not free it again)."""
    from .limits import _pool, _wait_event  # noqa: PLC0415 - limits imports this module

    clock = g.clock
    end = None if timeout is None else clock.now() + timeout

    def left() -> float:
        return 1e9 if end is None else max(0.0, end - clock.now())

    changed = threading.Event()
    primary: Future[Any] = _pool.submit(fn, args, kwargs)
    primary.add_done_callback(lambda _: lane.release())
    primary.add_done_callback(lambda _: changed.set())
    after = min(lane.policy.hedge.after_s, left())  # type: ignore[union-attr]
    hedge = _Hedge(g, lane, service)
    if _wait_event(clock, changed, after) or not hedge.admit(context):
        if not primary.done() and not _wait_event(clock, changed, left()):
            return HedgeRun(True, None, _timed_out(lane, timeout))
        return _future_run(primary)
    lane.hedge_stats[1] += 1
    second: Future[Any] = _pool.submit(hedge.fn, args, kwargs)  # type: ignore[arg-type]
    second.add_done_callback(lambda _: hedge.free_place())
    second.add_done_callback(lambda _: changed.set())
    pending = {primary, second}
    primary_error: BaseException | None = None
    while pending:
        changed.clear()
        done = [f for f in pending if f.done()]
        if not done:
            if not _wait_event(clock, changed, left()):
                break
            continue
        for fut in done:
            pending.discard(fut)
            exc = fut.exception()
            if fut is second:
                if exc is None and hedge.good(fut.result()):
                    lane.hedge_stats[2] += 1
                    if primary in pending:  # no longer waited for: counts in neither
                        primary_breaker.release(primary_permit)
                        return HedgeRun(False, hedged=True, hedge_value=fut.result())
                    return HedgeRun(True, None, primary_error, True, fut.result())
                if exc is not None:
                    hedge.failed(exc)
            elif exc is None:
                if second in pending:
                    hedge.cut_short()
                return HedgeRun(True, fut.result())
            else:
                primary_error = exc
    if second in pending:
        hedge.cut_short()
    if primary in pending:
        return HedgeRun(True, None, _timed_out(lane, timeout))
    return HedgeRun(True, None, primary_error)


def _future_run(primary: Future[Any]) -> HedgeRun:
    exc = primary.exception()
    return HedgeRun(True, None, exc) if exc is not None else HedgeRun(True, primary.result())
