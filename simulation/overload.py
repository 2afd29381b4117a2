"""Latency, queues and overload: what timeouts, limits, budgets and admission do under load.

The replay engine (:mod:`simulation.engine`) answers every call at once, which is right for
breakers and recovery and blind to load. This model is the other half: one provider with
``workers`` calls in service at once and its own FIFO queue behind them (an M/G/c queue),
log-normal service times that grow when it is over capacity (``slowdown``) or during a
``slow`` event, calls that never return during a ``hang``, failing calls during ``errors``,
and Poisson arrivals of a clinical mix with a deadline each, multiplied during a ``surge``.

The client side is the core's own decision code, on a :class:`ManualClock`: the lane of a
:class:`~healing.limits.CallPolicy` (bulkhead with acuity reservation and queue, Gradient2
limit, timeouts cut by the deadline, retries within the retry budget) — only the waiting is
done with events instead of threads. A timed-out call is cancelled as asyncio cancels it:
the client frees its place; the provider drops the call if it has not started it (as Ray
Serve does when its caller disconnects) and otherwise finishes the work for nobody.

Each scenario runs under three policies, on the same arrivals:

- ``unbounded``: no limit, retries without a budget (the guard before call policies);
- ``static``: a fixed limit at the policy's starting value, one class, the retry budget;
- ``adaptive_priority``: the policy as declared (adaptive limit, acuity reserves, queue).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from healing.admission import SHED, AdmissionConfig, Waiter
from healing.budget import RetryBudget
from healing.clock import ManualClock
from healing.limits import CallPolicy, Lane
from healing.safety import Acuity

from .overload_scenario import OverloadScenario

__all__ = ["VARIANTS", "run_overload", "variant_policy"]

VARIANTS = ("unbounded", "static", "adaptive_priority")
_ARRIVE, _SEND, _DONE, _TIMEOUT, _QUEUE_TIMEOUT, _SAMPLE = range(6)


def variant_policy(policy: CallPolicy, variant: str) -> tuple[CallPolicy, bool]:
    """The policy a variant runs and whether it keeps a retry budget."""
    if variant == "unbounded":
        return CallPolicy(timeout_s=policy.timeout_s, retries=policy.retries), False
    if variant == "static":
        adm = policy.admission or AdmissionConfig()
        return replace(policy, adaptive=None, admission=replace(adm, reserved=())), True
    if variant == "adaptive_priority":
        return policy, True
    raise ValueError(f"unknown variant {variant!r}; known: {list(VARIANTS)}")


@dataclass(slots=True)
class _Request:
    id: int
    acuity: Acuity
    arrival: float
    deadline: float
    attempts: int = 0
    waiter: Waiter | None = None
    servable: bool = True  # no hang overlaps its time to answer


@dataclass(slots=True)
class _Attempt:
    req: _Request
    start: float
    in_flight: int
    timeout: float | None
    ok: bool = True
    state: str = "running"  # running, done, timed_out
    started: bool = False  # the provider is working on it (else it waits in its queue)


@dataclass
class _Tally:
    requests: list[int] = field(default_factory=lambda: [0] * 4)
    in_time: list[int] = field(default_factory=lambda: [0] * 4)
    shed: list[int] = field(default_factory=lambda: [0] * 4)
    fallback: list[int] = field(default_factory=lambda: [0] * 4)
    explicit: int = 0  # life-critical requests failed explicitly, with guidance
    latencies: list[float] = field(default_factory=list)
    wasted: int = 0  # provider work finished for a caller that had given up
    dropped: int = 0  # queued provider work dropped because its caller had given up
    limits: list[int] = field(default_factory=list)
    life_servable: int = 0  # life-critical requests the provider could have answered
    life_servable_in_time: int = 0


class _Run:
    def __init__(self, sc: OverloadScenario, variant: str) -> None:
        self.sc = sc
        self.clock = clock = ManualClock()
        policy, budgeted = variant_policy(sc.policy, variant)
        budget = RetryBudget(policy.retry_budget) if budgeted and policy.retries else None
        self.lane = Lane("provider", None, policy, clock, budget)
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = itertools.count()
        self.arrivals = random.Random(f"{sc.seed}:arrivals")
        self.work = random.Random(f"{sc.seed}:work")
        self.busy = 0
        self.fifo: deque[_Attempt] = deque()
        self.tally = _Tally()
        self.ids = itertools.count()
        surge = max([e.value for e in sc.events if e.kind == "surge"], default=1.0)
        self.max_rate = sc.rate * surge
        shares = [s for _, s in sc.mix]
        self.cum = list(itertools.accumulate(shares))
        self.kinds = [a for a, _ in sc.mix]
        mu = math.log(sc.latency_s) - sc.latency_sigma ** 2 / 2  # mean = latency_s
        self.draw: Callable[[], float] = lambda: self.work.lognormvariate(mu, sc.latency_sigma)

    def push(self, t: float, kind: int, payload: Any) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, payload))

    def run(self) -> dict[str, Any]:
        self.push(self.arrivals.expovariate(self.max_rate), _ARRIVE, None)
        self.push(1.0, _SAMPLE, None)
        end = self.sc.duration_s
        handlers = {_ARRIVE: self._arrive, _SEND: self._send, _DONE: self._done,
                    _TIMEOUT: self._timeout, _QUEUE_TIMEOUT: self._queue_timeout,
                    _SAMPLE: self._sample}
        while self.heap:
            t, _, kind, payload = heapq.heappop(self.heap)
            if t >= end and kind in (_ARRIVE, _SAMPLE):
                continue  # no new work; what is in flight runs to its end
            self.clock.set(t)
            handlers[kind](payload, t)
        return self._report()

    # -- the load -----------------------------------------------------------------------------

    def _factor(self, kind: str, t: float) -> float:
        f = 1.0
        for e in self.sc.events:
            if e.kind == kind and e.active(t):
                f *= e.value
        return f

    def _arrive(self, _: Any, t: float) -> None:
        self.push(t + self.arrivals.expovariate(self.max_rate), _ARRIVE, None)
        if self.arrivals.random() * self.max_rate >= self.sc.rate * self._factor("surge", t):
            return  # thinning: the rate right now is below the maximum
        u = self.arrivals.random()
        acuity = self.kinds[min(next(i for i, c in enumerate(self.cum) if u < c or
                                     i == len(self.cum) - 1), len(self.kinds) - 1)]
        req = _Request(next(self.ids), acuity, t, t + self.sc.deadline_s)
        req.servable = not any(e.kind == "hang" and e.start - self.sc.deadline_s <= t
                               < e.start + e.length for e in self.sc.events)
        self.tally.requests[acuity] += 1
        if acuity is Acuity.LIFE_CRITICAL and req.servable:
            self.tally.life_servable += 1
        self._try(req, t)

    # -- the client: the core's decisions ---------------------------------------------------------

    def _try(self, req: _Request, t: float) -> None:
        if t >= req.deadline:
            self._give_up(req, shed=False)
            return
        adm = self.lane.admission
        if adm is not None:
            got = adm.try_acquire(req.acuity, lambda: self._woken(req),
                                  queue=req.attempts == 0)
            if got == SHED:
                self._give_up(req, shed=True)
                return
            if isinstance(got, Waiter):
                req.waiter = got
                self.push(t + self.lane._queue_wait(req.deadline), _QUEUE_TIMEOUT, req)
                return
        self._send(req, t)

    def _woken(self, req: _Request) -> None:
        # A queued request got its place, or lost its place in the queue to a more urgent one.
        if req.waiter is not None and req.waiter.state == SHED:
            self._give_up(req, shed=True)
        else:
            self.push(self.clock.now(), _SEND, req)

    def _queue_timeout(self, req: _Request, _t: float) -> None:
        waiter = req.waiter
        if waiter is not None and waiter.state is None and \
                self.lane.admission.abandon(waiter, "queue wait over") == SHED:  # type: ignore[union-attr]
            self._give_up(req, shed=True)

    def _send(self, req: _Request, t: float) -> None:
        timeout = self.lane.timeout(t, req.deadline)
        att = _Attempt(req, t, self.lane.in_flight, timeout)
        if self.busy < self.sc.workers:
            self._start(att, t)
        else:
            self.fifo.append(att)
        if timeout is not None:
            self.push(t + max(0.0, timeout), _TIMEOUT, att)

    def _timeout(self, att: _Attempt, t: float) -> None:
        if att.state != "running":
            return
        att.state = "timed_out"
        if not att.started:  # its caller has gone: the provider drops it unstarted
            self.fifo.remove(att)
            self.tally.dropped += 1
        lane = self.lane
        lane.observe(att.timeout, att.in_flight, False, t)  # type: ignore[arg-type]
        lane.release()
        self._failed(att.req, t)

    def _failed(self, req: _Request, t: float) -> None:
        req.attempts += 1
        if self.lane.may_retry(req.attempts, t, req.deadline, req.acuity):
            self._try(req, t)
        else:
            self._give_up(req, shed=False)

    def _give_up(self, req: _Request, *, shed: bool) -> None:
        tally = self.tally
        if shed:
            tally.shed[req.acuity] += 1
        if req.acuity is Acuity.LIFE_CRITICAL:
            tally.explicit += 1  # never a substitute: an explicit failure with guidance
        else:
            tally.fallback[req.acuity] += 1

    # -- the provider: an M/G/c queue ------------------------------------------------------------

    def _start(self, att: _Attempt, t: float) -> None:
        att.started = True
        self.busy += 1
        sc = self.sc
        over = max(0, self.busy + len(self.fifo) - sc.workers) / sc.workers
        service = self.draw() * (1.0 + sc.slowdown * over) * self._factor("slow", t)
        if self.work.random() < self._error_rate(t):
            att.ok = False
            service *= 0.25  # an error comes back sooner than an answer
        finish = t + service
        for e in sc.events:  # a hung provider answers nothing until the hang ends
            if e.kind == "hang" and e.active(t):
                finish = e.start + e.length + service
        self.push(finish, _DONE, att)

    def _error_rate(self, t: float) -> float:
        return max([e.value for e in self.sc.events if e.kind == "errors" and e.active(t)],
                   default=0.0)

    def _done(self, att: _Attempt, t: float) -> None:
        self.busy -= 1
        if self.fifo:
            self._start(self.fifo.popleft(), t)
        if att.state != "running":
            self.tally.wasted += 1
            return
        att.state = "done"
        lane = self.lane
        lane.observe(t - att.start, att.in_flight, att.ok, t)
        lane.release()
        req = att.req
        if not att.ok:
            self._failed(req, t)
            return
        if t <= req.deadline:
            self.tally.in_time[req.acuity] += 1
            if req.acuity is Acuity.LIFE_CRITICAL and req.servable:
                self.tally.life_servable_in_time += 1
            self.tally.latencies.append(t - req.arrival)
        else:
            self._give_up(req, shed=False)

    def _sample(self, _: Any, t: float) -> None:
        adm = self.lane.admission
        self.tally.limits.append(adm.limit if adm is not None else -1)
        self.push(t + 1.0, _SAMPLE, None)

    def _report(self) -> dict[str, Any]:
        tally, sc = self.tally, self.sc
        lat = sorted(tally.latencies)
        life = Acuity.LIFE_CRITICAL
        budget = self.lane.budget
        limits = [x for x in tally.limits if x >= 0]
        return {
            "requests": sum(tally.requests),
            "goodput_per_s": round(sum(tally.in_time) / sc.duration_s, 2),
            "p50_s": round(lat[len(lat) // 2], 4) if lat else None,
            "p99_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 4) if lat else None,
            "life_critical_success": round(tally.in_time[life] / tally.requests[life], 4)
            if tally.requests[life] else None,
            # of the life-critical requests no hang kept the provider from answering
            "life_critical_success_servable": round(
                tally.life_servable_in_time / tally.life_servable, 4)
            if tally.life_servable else None,
            "in_time": {a.label: tally.in_time[a] for a in Acuity},
            "requests_by_acuity": {a.label: tally.requests[a] for a in Acuity},
            "shed": {a.label: tally.shed[a] for a in Acuity},
            "fallback": sum(tally.fallback),
            "explicit_failures": tally.explicit,
            "wasted_provider_work": tally.wasted,
            "dropped_unstarted": tally.dropped,
            "retries": budget.granted if budget is not None else None,
            "retries_refused": budget.refused if budget is not None else None,
            "limit_min": min(limits) if limits else None,
            "limit_max": max(limits) if limits else None,
        }


def run_overload(sc: OverloadScenario, variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    """Run ``sc`` under each variant; their outcomes by variant, and the scenario's name."""
    return {"scenario": sc.name, "description": sc.description,
            "variants": {v: _Run(sc, v).run() for v in variants}}
