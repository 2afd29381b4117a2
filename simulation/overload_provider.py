"""A provider under load, for the overload model: an M/G/c queue.

``workers`` calls are in service at once and the rest wait in the provider's own FIFO queue.
Service times are log-normal around ``latency_s`` and grow by ``slowdown`` times the share of
work beyond the workers (a server thrashing under its backlog). The scenario's events apply
to the primary: ``slow`` multiplies service times, ``errors`` fail a share of calls (an error
comes back in a quarter of the time), and a ``hang`` answers nothing until it ends. A call
whose caller gave up is dropped if it has not started (as Ray Serve drops a disconnected
caller's request) and otherwise finished for nobody.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from .overload_scenario import Burst, ProviderSpec

__all__ = ["Provider"]


class Provider:
    def __init__(self, spec: ProviderSpec, events: tuple[Burst, ...], rng: random.Random,
                 finish: Callable[[float, Any], None]) -> None:
        self.spec, self.events, self.rng, self.finish = spec, events, rng, finish
        self.busy = 0
        self.fifo: deque[Any] = deque()
        self._mu = math.log(spec.latency_s) - spec.latency_sigma ** 2 / 2  # mean = latency_s

    def submit(self, call: Any, t: float) -> None:
        if self.busy < self.spec.workers:
            self._start(call, t)
        else:
            self.fifo.append(call)

    def drop(self, call: Any) -> bool:
        """Drop a call its caller gave up on, if it has not started; True if dropped."""
        if call.started:
            return False
        self.fifo.remove(call)
        return True

    def finished(self, t: float) -> None:
        """A call left service: the next in the queue starts."""
        self.busy -= 1
        if self.fifo:
            self._start(self.fifo.popleft(), t)

    def _factor(self, kind: str, t: float) -> float:
        f = 1.0
        for e in self.events:
            if e.kind == kind and e.active(t):
                f *= e.value
        return f

    def _start(self, call: Any, t: float) -> None:
        call.started = True
        self.busy += 1
        spec, rng = self.spec, self.rng
        over = max(0, self.busy + len(self.fifo) - spec.workers) / spec.workers
        own = rng.lognormvariate(self._mu, spec.latency_sigma) * self._factor("slow", t)
        service = own * (1.0 + spec.slowdown * over)  # congestion: the caller's doing
        errors = max([e.value for e in self.events if e.kind == "errors" and e.active(t)],
                     default=0.0)
        if rng.random() < errors:
            call.ok = False
            service *= 0.25
        call.own_s = own  # its time without the congestion, for judging outcomes
        end = t + service
        for e in self.events:
            if e.kind == "hang" and e.active(t):
                end = e.start + e.length + service
        self.finish(end, call)
