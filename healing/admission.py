"""Admission: a concurrency limit per provider, a bounded queue, and shedding by acuity.

A provider gets at most ``limit`` calls in flight (a bulkhead; the limit may be learnt, see
:mod:`healing.adaptive`). Capacity is reserved per clinical acuity by *trunk reservation*:
each class may only fill the limit up to its own ceiling, so the top of the limit is kept
for the classes above it::

    ceiling(urgent)  = limit x (1 - reserved[life_critical])
    ceiling(routine) = limit x (1 - reserved[life_critical] - reserved[urgent])
    ceiling(batch)   = limit x (1 - reserved[life_critical] - reserved[urgent] - reserved[routine])

so as load rises batch work is refused first, then routine, then urgent. Life-critical
requests are never refused here: they are admitted past the limit (the limit protects them
from everyone else, not from each other) and fail only when no provider can answer.

A request over its ceiling waits in a bounded queue (highest acuity first, then arrival)
when the policy has one; a full queue makes room for a more urgent arrival by shedding its
least urgent waiter. Decisions are values and the controller never blocks: waiting is the
driver's job (:mod:`healing.limits`), which calls :meth:`Admission.abandon` when a waiter's
time is up. Thread-safe: every decision takes one short lock.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from dataclasses import dataclass, field
from typing import Any

from .config import check_count, check_non_negative, check_ratio
from .errors import ConfigError
from .safety import Acuity

__all__ = ["ADMITTED", "Admission", "AdmissionConfig", "SHED", "Waiter"]

ADMITTED = "admitted"
SHED = "shed"


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    """A provider's bulkhead.

    Args:
        limit: calls in flight at most (the starting point when the limit is adaptive).
        max_queue: requests that may wait for a place (0: none wait, over-ceiling is shed).
        queue_timeout_s: how long a request waits at most (a deadline may cut it shorter).
        reserved: the share of the limit kept for each class and those above it; the
            shares of life_critical, urgent and routine must leave batch a positive ceiling.
    """

    limit: int = 64
    max_queue: int = 0
    queue_timeout_s: float = 0.0
    reserved: tuple[tuple[Acuity, float], ...] = (
        (Acuity.LIFE_CRITICAL, 0.1), (Acuity.URGENT, 0.1), (Acuity.ROUTINE, 0.2))

    def __post_init__(self) -> None:
        check_count("limit", self.limit)
        check_count("max_queue", self.max_queue, minimum=0)
        check_non_negative("queue_timeout_s", self.queue_timeout_s)
        if self.max_queue and not self.queue_timeout_s:
            raise ConfigError("queue_timeout_s", self.queue_timeout_s,
                              "must be positive when requests may queue (max_queue > 0)")
        seen = set()
        for acuity, share in self.reserved:
            if not isinstance(acuity, Acuity) or acuity is Acuity.BATCH or acuity in seen:
                raise ConfigError("reserved", acuity.name if isinstance(acuity, Acuity)
                                  else acuity, "names life_critical, urgent or routine, once")
            seen.add(acuity)
            check_ratio(f"reserved.{acuity.label}", share, allow_zero=True)
        if sum(s for _, s in self.reserved) >= 1.0:
            raise ConfigError("reserved", sum(s for _, s in self.reserved),
                              "must add up to less than 1, so batch work may run at all")

    def shares(self) -> tuple[float, ...]:
        """Each class's ceiling as a share of the limit, by acuity (life-critical: ∞)."""
        kept = dict(self.reserved)
        out, above = [math.inf], 0.0
        for acuity in (Acuity.URGENT, Acuity.ROUTINE, Acuity.BATCH):
            above += kept.get(Acuity(acuity - 1), 0.0)
            out.append(1.0 - above)
        return tuple(out)


@dataclass(eq=False, slots=True)
class Waiter:
    """A queued request; ``state`` turns to ADMITTED or SHED exactly once."""

    acuity: Acuity
    seq: int
    wake: Any = None  # the driver's callable, run once the state is decided
    state: str | None = None
    reason: str = ""

    def __lt__(self, other: Waiter) -> bool:  # the most urgent, then the oldest, first
        return (self.acuity, self.seq) < (other.acuity, other.seq)


@dataclass(slots=True)
class AdmissionStats:
    shed: list[int] = field(default_factory=lambda: [0] * len(Acuity))  # by acuity


class Admission:
    """One provider's bulkhead with acuity reservation (see the module doc)."""

    def __init__(self, config: AdmissionConfig | None = None) -> None:
        self.config = config if config is not None else AdmissionConfig()
        self._shares = self.config.shares()
        self._lock = threading.Lock()
        self._queue: list[Waiter] = []  # a heap
        self._seq = itertools.count()
        self.in_flight = 0
        self.limit = self.config.limit
        self.stats = AdmissionStats()

    def ceiling(self, acuity: Acuity) -> float:
        """How many calls may be in flight when a request of ``acuity`` is admitted."""
        return self.limit * self._shares[acuity]

    def try_acquire(self, acuity: Acuity, wake: Any = None, *,
                    queue: bool = True) -> str | Waiter:
        """ADMITTED (a place is taken: call :meth:`release` when done), SHED, or (when
        ``queue`` and the policy has a queue) a :class:`Waiter` whose ``wake`` runs once it
        is admitted or shed."""
        with self._lock:
            # life-critical's share is infinite: never refused here
            if self.in_flight < self.limit * self._shares[acuity]:
                self.in_flight += 1
                return ADMITTED
            cfg = self.config
            if not (queue and cfg.max_queue):
                self.stats.shed[acuity] += 1
                return SHED
            waiter = Waiter(acuity, next(self._seq), wake)
            woken: list[Waiter] = []
            if len(self._queue) >= cfg.max_queue:
                worst = max(self._queue)
                if not waiter < worst:  # nobody less urgent to make room for it
                    self.stats.shed[acuity] += 1
                    return SHED
                self._queue.remove(worst)
                heapq.heapify(self._queue)
                self._decide(worst, SHED, "a more urgent request took its place in the queue",
                             woken)
            heapq.heappush(self._queue, waiter)
        _wake_all(woken)
        return waiter

    def release(self) -> None:
        """A call admitted here finished (or was abandoned by its caller)."""
        with self._lock:
            self.in_flight -= 1
            woken = self._admit_waiters()
        _wake_all(woken)

    def set_limit(self, limit: int) -> None:
        """Change the limit (an adaptive limit's new estimate); waiters may now fit."""
        with self._lock:
            self.limit = max(1, int(limit))
            woken = self._admit_waiters()
        _wake_all(woken)

    def abandon(self, waiter: Waiter, reason: str) -> str:
        """The waiter's time is up. Returns its final state: SHED, or ADMITTED if a place
        was given to it first (the caller then owns that place and must release it)."""
        with self._lock:
            if waiter.state is None:
                self._queue.remove(waiter)
                heapq.heapify(self._queue)
                self._decide(waiter, SHED, reason, [])
            return waiter.state  # type: ignore[return-value]

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _admit_waiters(self) -> list[Waiter]:
        # Under the lock. Only the head may go: a less urgent waiter never overtakes a more
        # urgent one, even if its ceiling would let it in.
        woken: list[Waiter] = []
        queue = self._queue
        while queue and self.in_flight < self.limit * self._shares[queue[0].acuity]:
            waiter = heapq.heappop(queue)
            self.in_flight += 1
            self._decide(waiter, ADMITTED, "", woken)
        return woken

    def _decide(self, waiter: Waiter, state: str, reason: str, woken: list[Waiter]) -> None:
        waiter.state = state
        waiter.reason = reason
        if state == SHED:
            self.stats.shed[waiter.acuity] += 1
        woken.append(waiter)


def _wake_all(waiters: list[Waiter]) -> None:
    # Outside the lock: a driver's wake may take its own locks or schedule on a loop.
    for w in waiters:
        if w.wake is not None:
            w.wake()
