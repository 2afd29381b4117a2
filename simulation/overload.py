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
import random
from dataclasses import dataclass, field, replace
from typing import Any

from healing.admission import SHED, AdmissionConfig, Waiter
from healing.budget import RetryBudget
from healing.clock import ManualClock
from healing.limits import CallPolicy, Lane
from healing.safety import Acuity

from .overload_provider import Provider
from .overload_scenario import OverloadScenario

__all__ = ["NO_HEDGE", "VARIANTS", "run_overload", "variant_policy"]

VARIANTS = ("unbounded", "static", "adaptive_priority")
NO_HEDGE = "adaptive_no_hedge"  # run too when the policy hedges: its effect alone
_ARRIVE, _SEND, _DONE, _TIMEOUT, _QUEUE_TIMEOUT, _SAMPLE, _HEDGE = range(7)


def variant_policy(policy: CallPolicy, variant: str) -> tuple[CallPolicy, bool]:
    """The policy a variant runs and whether it keeps a retry budget."""
    if variant == "unbounded":
        return CallPolicy(timeout_s=policy.timeout_s, retries=policy.retries), False
    if variant == "static":
        adm = policy.admission or AdmissionConfig()
        return replace(policy, adaptive=None, admission=replace(adm, reserved=())), True
    if variant == "adaptive_priority":
        return policy, True
    if variant == NO_HEDGE:
        return replace(policy, hedge=None), True
    raise ValueError(f"unknown variant {variant!r}; known: {[*VARIANTS, NO_HEDGE]}")


@dataclass(slots=True)
class _Request:
    id: int
    acuity: Acuity
    arrival: float
    deadline: float
    informational: bool = False
    attempts: int = 0
    waiter: Waiter | None = None
    servable: bool = True  # no hang overlaps its time to answer
    provider_could: bool = False  # an attempt the provider could have answered in time
    primary: _Attempt | None = None  # the current attempt on the primary
    hedge: _Attempt | None = None  # the hedge's call, once asked
    primary_failed: bool = False  # failed while the hedge was still running


@dataclass(slots=True)
class _Attempt:
    req: _Request
    start: float
    in_flight: int
    timeout: float | None
    lane: Lane
    provider: Provider
    ok: bool = True
    state: str = "running"  # running, done, timed_out, cut
    started: bool = False  # the provider is working on it (else it waits in its queue)
    own_s: float = 0.0  # its service time without congestion (set when started)


@dataclass
class _Tally:
    requests: list[int] = field(default_factory=lambda: [0] * 4)
    in_time: list[int] = field(default_factory=lambda: [0] * 4)
    shed: list[int] = field(default_factory=lambda: [0] * 4)
    fallback: list[int] = field(default_factory=lambda: [0] * 4)
    explicit: int = 0  # life-critical requests failed explicitly, with guidance
    latencies: list[float] = field(default_factory=list)
    informational: list[float] = field(default_factory=list)  # their answers' latencies
    wasted: int = 0  # provider work finished for a caller that had given up
    dropped: int = 0  # queued provider work dropped because its caller had given up
    limits: list[int] = field(default_factory=list)
    life_servable: int = 0  # life-critical requests the provider could have answered
    life_unservable: int = 0  # every attempt failed on the provider's own account
    life_servable_in_time: int = 0


class _Run:
    def __init__(self, sc: OverloadScenario, variant: str) -> None:
        self.sc = sc
        self.clock = clock = ManualClock()
        policy, budgeted = variant_policy(sc.policy, variant)
        budget = RetryBudget(policy.retry_budget) if budgeted and policy.retries else None
        self.lane = Lane("provider", None, policy, clock, budget)
        # the hedge provider's own bulkhead, as the guard's gate gives it one
        self.hedge_lane = Lane("provider", "hedge", replace(policy, hedge=None), clock, None)
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = itertools.count()
        self.arrivals = random.Random(f"{sc.seed}:arrivals")
        work = random.Random(f"{sc.seed}:work")
        self.primary = Provider(sc.provider, sc.events, work,
                                lambda t, call: self.push(t, _DONE, call))
        self.backup = Provider(sc.hedge_provider, (), random.Random(f"{sc.seed}:hedge"),
                               lambda t, call: self.push(t, _DONE, call)) \
            if sc.hedge_provider is not None else None
        self.tally = _Tally()
        self.ids = itertools.count()
        surge = max([e.value for e in sc.events if e.kind == "surge"], default=1.0)
        self.max_rate = sc.rate * surge
        self.cum = list(itertools.accumulate(s for _, s in sc.mix))
        self.kinds = [a for a, _ in sc.mix]

    def push(self, t: float, kind: int, payload: Any) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, payload))

    def run(self) -> dict[str, Any]:
        self.push(self.arrivals.expovariate(self.max_rate), _ARRIVE, None)
        self.push(1.0, _SAMPLE, None)
        end = self.sc.duration_s
        handlers = {_ARRIVE: self._arrive, _SEND: self._send, _DONE: self._done,
                    _TIMEOUT: self._timeout, _QUEUE_TIMEOUT: self._queue_timeout,
                    _SAMPLE: self._sample, _HEDGE: self._hedge}
        while self.heap:
            t, _, kind, payload = heapq.heappop(self.heap)
            if t >= end and kind in (_ARRIVE, _SAMPLE):
                continue  # no new work; what is in flight runs to its end
            self.clock.set(t)
            handlers[kind](payload, t)
        return self._report()

    # -- the load -----------------------------------------------------------------------------

    def _arrive(self, _: Any, t: float) -> None:
        sc, rng = self.sc, self.arrivals
        self.push(t + rng.expovariate(self.max_rate), _ARRIVE, None)
        surge = 1.0
        for e in sc.events:
            if e.kind == "surge" and e.active(t):
                surge *= e.value
        if rng.random() * self.max_rate >= sc.rate * surge:
            return  # thinning: the rate right now is below the maximum
        u = rng.random()
        acuity = self.kinds[next((i for i, c in enumerate(self.cum) if u < c),
                                 len(self.kinds) - 1)]
        req = _Request(next(self.ids), acuity, t, t + sc.deadline_s)
        req.informational = (sc.informational > 0 and acuity is not Acuity.LIFE_CRITICAL
                             and rng.random() < sc.informational)
        req.servable = not any(e.kind == "hang" and e.start - sc.deadline_s <= t
                               < e.start + e.length for e in sc.events)
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
                self.push(t + self.lane.queue_wait(req.deadline), _QUEUE_TIMEOUT, req)
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
        lane = self.lane
        timeout = lane.timeout(t, req.deadline)
        att = _Attempt(req, t, lane.in_flight, timeout, lane, self.primary)
        req.primary, req.hedge, req.primary_failed = att, None, False
        self.primary.submit(att, t)
        if timeout is not None:
            self.push(t + max(0.0, timeout), _TIMEOUT, att)
        hedge = lane.policy.hedge
        if hedge is not None and req.informational and req.attempts == 0 \
                and self.backup is not None:
            lane.hedge_stats[0] += 1
            if timeout is None or hedge.after_s < timeout:
                self.push(t + hedge.after_s, _HEDGE, att)

    def _hedge(self, att: _Attempt, t: float) -> None:
        # The primary is slow: ask the hedge provider too, if its bulkhead admits the call.
        if att.state != "running":
            return
        req, lane = att.req, self.hedge_lane
        if lane.admission is not None and \
                lane.admission.try_acquire(req.acuity, queue=False) == SHED:
            return
        self.lane.hedge_stats[1] += 1
        req.hedge = call = _Attempt(req, t, lane.in_flight, None, lane, self.backup)  # type: ignore[arg-type]
        self.backup.submit(call, t)  # type: ignore[union-attr]

    def _cut(self, att: _Attempt) -> None:
        # The race is over for this call: cancelled, its place freed, counted nowhere.
        att.state = "cut"
        att.lane.release()
        if att.provider.drop(att):
            self.tally.dropped += 1

    def _timeout(self, att: _Attempt, t: float) -> None:
        req = att.req
        hedge = req.hedge
        hedging = hedge is not None and hedge.state == "running"
        if att.state == "running":
            att.state = "timed_out"
            if att.provider.drop(att):
                self.tally.dropped += 1
            self._judge(att)
            att.lane.observe(att.timeout, att.in_flight, False, t, True)  # type: ignore[arg-type]
            att.lane.release()
        elif not (req.primary_failed and req.primary is att and hedging):
            return
        if hedging:
            self._cut(hedge)  # type: ignore[arg-type]
        self._failed(req, t)

    def _judge(self, att: _Attempt) -> None:
        # Could the provider have answered this attempt in time on its own? Not if it
        # answered with an error, or its own service time (congestion aside) passed the
        # deadline; a call that never started waited in a queue selfheal let build.
        if not att.started or (att.ok and att.own_s <= self.sc.deadline_s):
            att.req.provider_could = True

    def _failed(self, req: _Request, t: float) -> None:
        req.attempts += 1
        req.primary_failed = False
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
            if req.servable and req.attempts and not req.provider_could:
                tally.life_unservable += 1
        else:
            tally.fallback[req.acuity] += 1

    def _done(self, att: _Attempt, t: float) -> None:
        att.provider.finished(t)
        if att.state != "running":
            self.tally.wasted += 1
            return
        att.state = "done"
        self._judge(att)
        att.lane.observe(t - att.start, att.in_flight, att.ok, t)
        att.lane.release()
        req = att.req
        other = req.hedge if att is req.primary else req.primary
        racing = other is not None and other.state == "running"
        if att.ok:
            if racing:
                self._cut(other)  # type: ignore[arg-type]
            if att is req.hedge:
                self.lane.hedge_stats[2] += 1
            self._answered(req, t)
        elif att is req.hedge:
            if not racing and req.primary_failed:
                self._failed(req, t)  # both failed
        elif racing:
            req.primary_failed = True  # the hedge may still answer
        else:
            self._failed(req, t)

    def _answered(self, req: _Request, t: float) -> None:
        tally = self.tally
        if t > req.deadline:
            self._give_up(req, shed=False)
            return
        tally.in_time[req.acuity] += 1
        if req.acuity is Acuity.LIFE_CRITICAL and req.servable:
            tally.life_servable_in_time += 1
        tally.latencies.append(t - req.arrival)
        if req.informational:
            tally.informational.append(t - req.arrival)

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
        hedged = self.lane.hedge_stats
        return {
            "requests": sum(tally.requests),
            "goodput_per_s": round(sum(tally.in_time) / sc.duration_s, 2),
            "p50_s": round(lat[len(lat) // 2], 4) if lat else None,
            "p99_s": _p99(lat),
            "p99_informational_s": _p99(sorted(tally.informational)),
            "hedge_rate": round(hedged[1] / hedged[0], 4) if hedged[0] else None,
            "hedges_won": hedged[2],
            "life_critical_success": round(tally.in_time[life] / tally.requests[life], 4)
            if tally.requests[life] else None,
            # of the life-critical requests the provider could have answered: no hang kept
            # it from answering, and not every attempt failed on its own account (an error,
            # or a service time beyond the deadline even without congestion)
            "life_critical_success_servable": round(
                tally.life_servable_in_time / (tally.life_servable - tally.life_unservable), 4)
            if tally.life_servable > tally.life_unservable else None,
            # failed with every attempt failing on the provider's own account
            "life_critical_unservable": tally.life_unservable,
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


def _p99(lat: list[float]) -> float | None:
    return round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 4) if lat else None


def run_overload(sc: OverloadScenario,
                 variants: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run ``sc`` under each variant (default: the three, and the declared policy without
    its hedge when it has one); outcomes by variant, and the scenario's name."""
    if variants is None:
        variants = (*VARIANTS, NO_HEDGE) if sc.policy.hedge is not None else VARIANTS
    return {"scenario": sc.name, "description": sc.description,
            "variants": {v: _Run(sc, v).run() for v in variants}}
