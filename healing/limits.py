"""Call policies per service and provider, and the gate that applies them to the guard's calls.

A :class:`CallPolicy` bundles what bounds one provider's calls: a timeout, a bulkhead with
acuity reservation (:mod:`healing.admission`), an adaptive limit (:mod:`healing.adaptive`),
retries of the primary and the service's retry budget (:mod:`healing.budget`). The catalogue
declares them (``limits`` in services.yaml, docs/catalogue.md); a :class:`CallGate` keeps one
:class:`Lane` of live state per (service, provider) that has a policy, and the guard asks it
before every call (:mod:`healing.limited`).

Timeouts and deadlines. An attempt gets ``min(timeout, deadline - now)``. An asyncio call is
cancelled when its time is up. A synchronous call cannot be interrupted in Python: it runs in
a worker thread, the caller stops waiting for it, and the thread runs on until the operation
returns — keeping its place in the bulkhead, so a hanging provider holds at most its limit of
threads and then every further call is shed to the fallback tiers at once. Waiting for an
answer or for a queue place uses the guard's clock: on a :class:`ManualClock` a wait that
is not over at once takes its whole time (as ``ManualClock.sleep`` does), so tests and the
simulator decide timeouts on simulated time.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .adaptive import AdaptiveConfig, Gradient2
from .admission import ADMITTED, Admission, AdmissionConfig, Waiter
from .budget import RetryBudget, RetryBudgetConfig
from .clock import Clock, ManualClock, SystemClock
from .config import check_count, check_positive
from .errors import CallTimedOut, ConfigError
from .safety import Acuity

__all__ = ["CallGate", "CallPolicy", "HedgeConfig", "Lane", "abounded", "await_future",
           "bounded", "cancel_task", "on_worker", "wait_event"]

# Real seconds a ManualClock gives a worker thread to finish before its wait counts as the
# whole simulated timeout: only scheduling slack, never a modelled duration.
_MANUAL_GRACE_S = 0.5


@dataclass(frozen=True, slots=True)
class HedgeConfig:
    """Ask ``provider`` too when the primary has not answered within ``after_s``
    (:mod:`healing.hedging`)."""

    provider: str
    after_s: float

    def __post_init__(self) -> None:
        if not (isinstance(self.provider, str) and self.provider):
            raise ConfigError("provider", self.provider, "must name one of the service's "
                              "providers (asked too when the primary is slow)")
        check_positive("after_s", self.after_s)


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How one provider's calls are bounded (every part optional).

    Args:
        timeout_s: an attempt's time at most (None: as long as it takes).
        admission: the bulkhead (None: no limit, nothing queued or shed).
        adaptive: learn the bulkhead's limit from latency (needs ``admission``; its
            ``limit`` is the starting point).
        retries: further attempts of the primary after a failure, each within the retry
            budget, the breaker and the deadline.
        retry_budget: the service's budget for those retries.
        hedge: for informational requests, ask this provider too when the primary is slow
            (:mod:`healing.hedging`).
    """

    timeout_s: float | None = None
    admission: AdmissionConfig | None = None
    adaptive: AdaptiveConfig | None = None
    retries: int = 0
    retry_budget: RetryBudgetConfig = field(default_factory=RetryBudgetConfig)
    hedge: HedgeConfig | None = None

    def __post_init__(self) -> None:
        if self.timeout_s is not None:
            check_positive("timeout_s", self.timeout_s)
        if self.adaptive is not None and self.admission is None:
            raise ConfigError("adaptive", "set", "needs a concurrency limit to adapt "
                              "(declare concurrency.limit as its starting point)")
        check_count("retries", self.retries, minimum=0)


class Lane:
    """Live state of one provider's policy: its bulkhead, learnt limit and latency."""

    __slots__ = ("admission", "budget", "clock", "hedge_stats", "limit", "policy",
                 "provider", "service", "typical_s")

    def __init__(self, service: str, provider: str | None, policy: CallPolicy, clock: Clock,
                 budget: RetryBudget | None) -> None:
        self.service, self.provider, self.policy, self.clock = service, provider, policy, clock
        self.admission = Admission(policy.admission) \
            if policy.admission is not None else None
        self.limit = Gradient2(policy.adaptive, policy.admission.limit, clock.now()) \
            if policy.adaptive is not None else None  # type: ignore[union-attr]
        self.budget = budget
        self.typical_s = 0.0  # moving average of answered calls' latency
        self.hedge_stats = [0, 0, 0]  # requests that could be hedged, hedged, hedge won

    @property
    def in_flight(self) -> int:
        return self.admission.in_flight if self.admission is not None else 0

    def timeout(self, now: float, deadline: float | None) -> float | None:
        """This attempt's time: the policy's timeout, cut short by the deadline."""
        t = self.policy.timeout_s
        if deadline is not None:
            left = deadline - now
            t = left if t is None or left < t else t
        return t

    def too_late(self, now: float, deadline: float | None) -> bool:
        """True when a call started now could not answer before the deadline: the time left
        is under the provider's typical latency (or gone)."""
        return deadline is not None and deadline - now <= self.typical_s

    def acquire(self, acuity: Acuity, deadline: float | None, *, queue: bool = True) -> str:
        """Take a place for a synchronous call, waiting in the queue if allowed. Returns
        ADMITTED or the reason it was shed."""
        adm = self.admission
        if adm is None:
            return ADMITTED
        got = adm.try_acquire(acuity, None, queue=queue)
        if not isinstance(got, Waiter):
            return got if got == ADMITTED else _full(adm)
        # Made only when queued (the common path pays for no Event). A decision taken
        # before ``wake`` is set is seen in ``state`` just below; one after it calls wake.
        event = threading.Event()
        got.wake = event.set
        if got.state is not None:
            event.set()
        wait = self.queue_wait(deadline)
        try:
            if not wait_event(self.clock, event, wait):
                adm.abandon(got, f"waited {wait:.3g} s in the queue")
        except BaseException:
            self._leave(got)
            raise
        return ADMITTED if got.state == ADMITTED else got.reason

    async def aacquire(self, acuity: Acuity, deadline: float | None) -> str:
        """The asyncio form of :meth:`acquire`."""
        adm = self.admission
        if adm is None:
            return ADMITTED
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:  # may run on another thread (a sync caller's release)
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

        got = adm.try_acquire(acuity, wake)
        if not isinstance(got, Waiter):
            return got if got == ADMITTED else _full(adm)
        wait = self.queue_wait(deadline)
        try:
            if not await await_future(self.clock, fut, wait):
                adm.abandon(got, f"waited {wait:.3g} s in the queue")
        except BaseException:  # cancelled while queued (a caller that went away)
            self._leave(got)
            raise
        return ADMITTED if got.state == ADMITTED else got.reason

    def _leave(self, waiter: Waiter) -> None:
        # The caller stops waiting for good: out of the queue, or, if a place was given to
        # it in the meantime, that place back.
        if self.admission.abandon(waiter, "its caller went away") == ADMITTED:  # type: ignore[union-attr]
            self.admission.release()  # type: ignore[union-attr]

    def release(self) -> None:
        """An admitted call really ended: free its place."""
        if self.admission is not None:
            self.admission.release()

    def observe(self, latency_s: float, in_flight: int, ok: bool, now: float,
                timed_out: bool = False) -> None:
        """Learn from an attempt's latency (a timed-out one's: the time it was given)."""
        if ok:  # the typical answer time, for deadline decisions (~20-call average)
            self.typical_s += (latency_s - self.typical_s) * 0.05
        if self.limit is not None:
            new = self.limit.sample(latency_s, in_flight, now, timed_out)
            if new is not None:
                self.admission.set_limit(new)  # type: ignore[union-attr]

    def may_retry(self, attempt: int, now: float, deadline: float | None,
                  acuity: Acuity = Acuity.ROUTINE) -> bool:
        """Whether attempt number ``attempt`` (1: the first retry) may run. Life-critical
        retries are spent from the budget but never refused by it: they are few, and
        selfheal never turns one away while its provider might still answer."""
        if attempt > self.policy.retries or self.too_late(now, deadline):
            return False
        if self.budget is None:
            return True
        if acuity is Acuity.LIFE_CRITICAL:
            self.budget.spend(now)
            return True
        return self.budget.try_retry(now)

    def queue_wait(self, deadline: float | None) -> float:
        """How long a request may wait for a place: the queue timeout, cut by the deadline."""
        wait = self.policy.admission.queue_timeout_s  # type: ignore[union-attr]
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - self.clock.now()))
        return wait


class CallGate:
    """Every (service, provider)'s :class:`Lane`, made on first use from the policies.

    Args:
        policies: by ``(service, provider)``; ``(service, None)`` is the service's default
            for providers without their own.
        clock: the guard's clock.
    """

    def __init__(self, policies: Mapping[tuple[str, str | None], CallPolicy],
                 clock: Clock | None = None) -> None:
        self.policies = dict(policies)
        self.clock = clock if clock is not None else SystemClock()
        self._lanes: dict[tuple[str, str | None], Lane | None] = {}
        self._budgets: dict[str, RetryBudget] = {}
        self._lock = threading.Lock()

    def lane(self, service: str, provider: str | None) -> Lane | None:
        """The lane of a provider with a policy, or None (the call is not bounded)."""
        key = (service, provider)
        lane = self._lanes.get(key, _UNSEEN)
        if lane is not _UNSEEN:  # a known provider, bounded or not: the usual case
            return lane  # type: ignore[return-value]
        with self._lock:
            if key not in self._lanes:
                policy = self.policies.get(key) or self.policies.get((service, None))
                budget = None
                if policy is not None and policy.retries:
                    budget = self._budgets.get(service)
                    if budget is None:
                        budget = self._budgets[service] = RetryBudget(policy.retry_budget)
                self._lanes[key] = Lane(service, provider, policy, self.clock, budget) \
                    if policy is not None else None
            return self._lanes[key]

    def snapshot(self) -> list[dict[str, Any]]:
        """Every lane's limit, calls in flight, queue and sheds (for metrics and the API)."""
        out = []
        for lane in list(self._lanes.values()):
            if lane is None:
                continue
            adm = lane.admission
            out.append({
                "service": lane.service, "provider": lane.provider,
                "timeout_s": lane.policy.timeout_s, "typical_s": round(lane.typical_s, 6),
                "limit": adm.limit if adm else None, "in_flight": adm.in_flight if adm else 0,
                "queued": adm.queued if adm else 0,
                "shed": {a.label: adm.stats.shed[a] for a in Acuity} if adm else {},
                "retries_granted": lane.budget.granted if lane.budget else 0,
                "retries_refused": lane.budget.refused if lane.budget else 0,
                "hedge_rate": round(lane.hedge_stats[1] / lane.hedge_stats[0], 4)
                if lane.hedge_stats[0] else None,
                "hedges_won": lane.hedge_stats[2]})
        return out


_UNSEEN = object()


def _full(adm: Admission) -> str:
    return f"{adm.in_flight} calls in flight at its limit of {adm.limit}"


# -- waiting on the guard's clock --------------------------------------------------------------

def wait_event(clock: Clock, event: threading.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds of the clock (inf: as long as it
    takes); True if it was set."""
    if timeout == float("inf"):
        return event.wait()
    if isinstance(clock, ManualClock):
        if event.wait(min(timeout, _MANUAL_GRACE_S) if timeout > 0 else 0):
            return True
        clock.advance(max(0.0, timeout))
        return event.is_set()
    return event.wait(timeout)


async def await_future(clock: Clock, fut: asyncio.Future[Any], timeout: float) -> bool:
    """Wait for ``fut`` at most ``timeout`` seconds of the clock; True if it finished."""
    if fut.done():
        return True
    if timeout <= 0:
        return False
    if timeout == float("inf"):
        await asyncio.wait({fut})
        return True
    if isinstance(clock, SystemClock):
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return False
        return True
    timer = asyncio.ensure_future(clock.asleep(timeout))
    await asyncio.wait({fut, timer}, return_when=asyncio.FIRST_COMPLETED)
    timer.cancel()
    return fut.done()


# -- bounded calls -----------------------------------------------------------------------------

class _DaemonPool:
    """Worker threads for bounded synchronous calls. Daemon threads, unlike
    ``ThreadPoolExecutor``'s: a provider call that never returns must not stop the process
    from exiting (``selfheal down``). Grows to ``max_workers``; each provider's bulkhead
    bounds how many of them its hung calls can hold."""

    def __init__(self, max_workers: int = 512) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...],
                                             Mapping[str, Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._max = max_workers

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: Mapping[str, Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._idle == 0 and self._threads < self._max:
                self._threads += 1
                threading.Thread(target=self._work, name=f"selfheal-call-{self._threads}",
                                 daemon=True).start()
        self._queue.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            future, fn, args, kwargs = self._queue.get()
            with self._lock:
                self._idle -= 1
            if not future.set_running_or_notify_cancel():
                continue  # its caller stopped waiting before it started
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # the caller's future carries it, whatever it is
                future.set_exception(exc)


_pool = _DaemonPool()
on_worker = _pool.submit  # run a synchronous call on a daemon worker thread: its Future


async def cancel_task(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has stopped."""
    task.cancel()
    with contextlib.suppress(BaseException):  # its cancellation, or its own last error
        await task


def bounded(lane: Lane, fn: Callable[..., Any], args: tuple[Any, ...],
            kwargs: Mapping[str, Any], timeout: float, on_end: Callable[[], None]) -> Any:
    """Run a synchronous ``fn`` for at most ``timeout`` s; ``on_end`` runs once it has
    really ended (at once, or when an abandoned thread finally returns)."""
    if timeout <= 0:
        on_end()
        raise CallTimedOut(lane.service, lane.provider, 0.0)
    future = on_worker(fn, args, kwargs)
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if wait_event(lane.clock, done, timeout):
        on_end()
        return future.result()
    if future.cancel():  # it never started: nothing runs on unwaited
        on_end()
    else:
        future.add_done_callback(lambda _: on_end())
    raise CallTimedOut(lane.service, lane.provider, timeout)


async def abounded(lane: Lane, awaitable: Any, timeout: float) -> Any:
    """Await ``awaitable`` for at most ``timeout`` s of the lane's clock; cancel it after."""
    if timeout <= 0:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise CallTimedOut(lane.service, lane.provider, 0.0)
    if isinstance(lane.clock, SystemClock):  # the loop's own timer: no second task
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await awaitable
        except TimeoutError:
            if scope.expired():
                raise CallTimedOut(lane.service, lane.provider, timeout) from None
            raise  # the operation's own TimeoutError
    task = asyncio.ensure_future(awaitable)
    if not await await_future(lane.clock, task, timeout):
        await cancel_task(task)
        raise CallTimedOut(lane.service, lane.provider, timeout)
    return task.result()

