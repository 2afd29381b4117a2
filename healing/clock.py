"""Time for the core: one protocol, a wall clock and a manual (simulated) clock.

Every time-based decision in ``healing`` reads :meth:`Clock.now` (monotonic seconds, only
compared within one process) and records carry :meth:`Clock.utcnow`. Nothing outside this
module reads ``time.time()`` or ``time.monotonic()``; a test greps for it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the core needs to know about time."""

    def now(self) -> float:
        """Monotonic seconds; only differences and comparisons are meaningful."""
        ...

    def utcnow(self) -> datetime:
        """Timezone-aware UTC wall time, for records."""
        ...

    def wall(self) -> float:
        """UTC epoch seconds, for records that cross processes (cheaper than ``utcnow``)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` for decisions, the system wall clock for records."""

    __slots__ = ()

    # Bound once so the hot path pays one attribute lookup, not two.
    now = staticmethod(time.monotonic)

    wall = staticmethod(time.time)

    def utcnow(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class ManualClock:
    """A clock that moves only when told to: for tests and the simulator.

    ``sleep`` advances the clock at once (there is nobody else to advance it for a blocked
    thread). ``asleep`` waits until somebody advances the clock past its wake time, so several
    tasks can sleep concurrently and wake in order; :meth:`run` drives a coroutine by jumping
    the clock to the next sleeper whenever every task is waiting on it (trio's autojump).

    Args:
        start: the initial ``now()``.
        epoch: the wall time that ``now() == start`` corresponds to.
    """

    def __init__(self, start: float = 0.0, epoch: datetime = _EPOCH) -> None:
        self._now = float(start)
        self._start = float(start)
        self._epoch = epoch
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def utcnow(self) -> datetime:
        return self._epoch + timedelta(seconds=self._now - self._start)

    def wall(self) -> float:
        return self._epoch.timestamp() + (self._now - self._start)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0) and wake every sleeper now due."""
        if seconds < 0:
            raise ValueError(f"cannot advance a clock by a negative amount, got {seconds}")
        self.set(self._now + seconds)

    def set(self, t: float) -> None:
        """Move time to ``t``, which may not lie in the past."""
        if t < self._now:
            raise ValueError(f"time only moves forward: now is {self._now}, asked for {t}")
        self._now = float(t)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    def next_wake(self) -> float | None:
        """The earliest time a pending ``asleep`` wakes, if any."""
        while self._sleepers and self._sleepers[0][2].done():  # cancelled sleepers
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def run(self, coro, *, idle_spins: int = 20, max_jumps: int = 100_000):
        """Run ``coro`` to completion, jumping time forward whenever all tasks are asleep.

        "All tasks are asleep" is judged by letting the event loop spin ``idle_spins`` times
        without the coroutine finishing; work that waits on anything other than this clock
        (real I/O) must finish within those spins.
        """
        task = asyncio.ensure_future(coro)
        for _ in range(max_jumps):
            for _ in range(idle_spins):
                if task.done():
                    return task.result()
                await asyncio.sleep(0)
            wake = self.next_wake()
            if wake is None:
                if task.done():
                    return task.result()
                continue
            self.set(max(wake, self._now))
        task.cancel()
        raise RuntimeError(f"ManualClock.run: coroutine still running after {max_jumps} jumps")
