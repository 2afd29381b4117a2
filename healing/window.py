"""Sliding-window call metrics with O(1) record, after resilience4j's two windows.

An outcome enters a window as a small integer code: bit 0 set means the call failed,
bit 1 set means it was slow. The window keeps exact totals beside its storage, so reading
the failure and slow-call counts costs nothing and recording costs a constant.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from typing import Any

from .config import CircuitConfig, WindowType

__all__ = ["FAILED", "SLOW", "SUCCESS", "CountWindow", "TimeWindow", "window_for"]

SUCCESS = 0
FAILED = 1
SLOW = 2


class CountWindow:
    """The last ``size`` recorded calls.

    Every call takes the next sequence number from an ``itertools.count`` (one atomic C call
    under the GIL); only failures and slow calls are stored, as the sequence numbers of those
    calls. The window is the sequence numbers ``[total - size, total)``, so a success needs no
    lock at all — the circuit breaker's hot path relies on this — and counts are exact once
    the stored numbers that fell out of the window are dropped (lazily, O(1) amortised).
    """

    __slots__ = ("_failed", "_slow", "seq", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.seq = itertools.count()
        self._failed: deque[int] = deque()
        self._slow: deque[int] = deque()

    def record(self, code: int, now: float) -> None:
        n = next(self.seq)
        if code:
            if code & FAILED:
                self._failed.append(n)
            if code & SLOW:
                self._slow.append(n)

    @property
    def total(self) -> int:
        """How many calls were ever recorded (including those that left the window)."""
        # NOTE: itertools.count exposes its next value only through repr.
        return int(repr(self.seq)[6:-1])

    @property
    def calls(self) -> int:
        return min(self.total, self.size)

    @property
    def failed(self) -> int:
        return _live(self._failed, self.total - self.size)

    @property
    def slow(self) -> int:
        return _live(self._slow, self.total - self.size)

    def roll(self, now: float) -> None:
        """Count windows do not age; present so both windows share one interface."""

    def codes(self) -> list[int]:
        """The recorded codes, oldest first."""
        total = self.total
        first = max(0, total - self.size)
        failed = {n for n in self._failed if n >= first}
        slow = {n for n in self._slow if n >= first}
        return [(FAILED if n in failed else 0) | (SLOW if n in slow else 0)
                for n in range(first, total)]

    def snapshot(self, now: float) -> dict[str, Any]:
        return {"type": "count", "size": self.size, "codes": self.codes()}

    def restore(self, data: dict[str, Any], now: float) -> None:
        for code in data["codes"][-self.size :]:
            self.record(int(code), now)


def _live(numbers: deque[int], first: int) -> int:
    while numbers and numbers[0] < first:
        numbers.popleft()
    return len(numbers)


class TimeWindow:
    """The calls of the last ``size`` whole seconds, in one bucket per second.

    A call recorded at time ``t`` lands in second ``floor(t)``; the window holds the seconds
    ``s`` with ``s > floor(latest) - size`` where ``latest`` is the latest time seen. Moving
    forward clears the seconds passed over, at most ``size`` buckets however long the gap, so a
    record costs O(1) amortised over the calls of one second.
    """

    __slots__ = ("_calls", "_failed", "_head", "_slow", "calls", "failed", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self._calls = [0] * size
        self._failed = [0] * size
        self._slow = [0] * size
        self._head: int | None = None
        self.calls = 0
        self.failed = 0
        self.slow = 0

    def roll(self, now: float) -> None:
        """Age the window to ``now``: forget the seconds that fell out of it."""
        sec = math.floor(now)
        head = self._head
        if head is None:
            self._head = sec
            return
        if sec <= head:
            return  # time never runs backwards within a process; a late record joins the head
        size = self.size
        if sec - head >= size:
            for lst in (self._calls, self._failed, self._slow):
                lst[:] = [0] * size
            self.calls = self.failed = self.slow = 0
        else:
            for s in range(head + 1, sec + 1):
                j = s % size
                self.calls -= self._calls[j]
                self.failed -= self._failed[j]
                self.slow -= self._slow[j]
                self._calls[j] = self._failed[j] = self._slow[j] = 0
        self._head = sec

    def record(self, code: int, now: float) -> None:
        self.roll(now)
        j = self._head % self.size  # type: ignore[operator]
        self._calls[j] += 1
        self.calls += 1
        if code:
            f = code & 1
            s = code >> 1
            self._failed[j] += f
            self.failed += f
            self._slow[j] += s
            self.slow += s

    def buckets(self) -> list[tuple[int, int, int, int]]:
        """Non-empty buckets as ``(second, calls, failed, slow)``, oldest first."""
        if self._head is None:
            return []
        out = []
        for s in range(self._head - self.size + 1, self._head + 1):
            j = s % self.size
            if self._calls[j]:
                out.append((s, self._calls[j], self._failed[j], self._slow[j]))
        return out

    def snapshot(self, now: float) -> dict[str, Any]:
        self.roll(now)
        head = self._head if self._head is not None else math.floor(now)
        # Ages, not absolute seconds: monotonic time means nothing in another process.
        return {
            "type": "time",
            "size": self.size,
            "buckets": [[head - s, c, f, sl] for s, c, f, sl in self.buckets()],
        }

    def restore(self, data: dict[str, Any], now: float) -> None:
        head = math.floor(now)
        self._head = head
        for age, c, f, sl in data["buckets"]:
            if not 0 <= age < self.size:
                continue
            j = (head - age) % self.size
            self._calls[j] += c
            self._failed[j] += f
            self._slow[j] += sl
            self.calls += c
            self.failed += f
            self.slow += sl


def window_for(config: CircuitConfig) -> CountWindow | TimeWindow:
    """A fresh, empty window of the type and size ``config`` asks for."""
    if config.window_type is WindowType.COUNT:
        return CountWindow(config.window_size)
    return TimeWindow(config.window_size)
