"""The discrete-event engine: simulated traffic and faults through the real ``healing`` core.

One :class:`Simulation` is one run of one scenario with one seed, with self-healing on or off
(the baseline). Time is a :class:`~healing.clock.ManualClock` moved from event to event; the
events are request arrivals (Poisson per service), fault starts and ends, health checks, error
threshold checks and the timers of recovery actions.

With self-healing on, every request goes through a real :class:`~healing.guard.Guard` (safety,
breakers, fallback tiers, integrity checks, routes, audit); circuit transitions, health checks
(:class:`~healing.health.HealthTracker`) and the error-rate bound raise triggers into a real
:class:`~healing.orchestration.RecoveryQueue`, whose workflows run in the real executor
(:func:`healing.workflow.execute`). Only the world is simulated (:mod:`simulation.world`):
what a recovery action physically does, and how providers answer.

With self-healing off, requests go straight to the primary provider, whatever it answers is
served, and nothing watches or heals: faults end when they end.

A request is served at its arrival instant: the clock does not move during a call, so a
breaker sees no slow calls; latency matters as timeouts (see ``latency_spike``).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import random
from array import array
from collections.abc import Callable
from typing import Any

from healing.audit import recovery_step
from healing.cache import FallbackCache
from healing.circuit import CircuitState
from healing.clock import ManualClock
from healing.config import TierMethod
from healing.errors import SelfHealError
from healing.events import CircuitTransitioned
from healing.fallback import FallbackStrategyRegistry
from healing.guard import Guard
from healing.health import CheckResult, HealthCheckFailed, HealthTracker
from healing.orchestration import RecoveryQueue, TriggerEvent
from healing.outcome import NOT_CALLED
from healing.registry import CircuitBreakerRegistry
from healing.safety import ClinicalContext, ClinicalSafetyValidator, Criticality, OperationType
from healing.workflow import Trigger
from learning.monitor import PredictiveMonitor
from learning.patterns import FailureEvent, PatternRecognizer, ProactivePreventionEngine
from learning.resources import MemoryGrowth

from .policy import Policy, default_policy
from .records import SAMPLE_RATE, Detection, OutcomeCounter, RunAudit, RunResult, ServiceLog
from .recovery_actions import WorkflowRun
from .scenario import Scenario
from .world import ProviderError, World, good_answer

__all__ = ["Simulation"]

(_ARRIVAL, _FAULT_START, _FAULT_END, _HEALTH, _THRESHOLD, _MONITOR, _LEARN, _PREVENT,
 _TIMER) = range(9)
_PROGRESS_S = 60.0
_LEARN_S = 3600.0  # patterns are refitted hourly on the run's own detections
_PREVENT_S = 60.0
_QUESTIONS = 200  # distinct requests per service: what the fallback cache can hold answers to
_KEYS = [f"q{i}" for i in range(_QUESTIONS)]
_PRESCRIPTIVE = OperationType.PRESCRIPTIVE
_LIFE_CRITICAL = Criticality.LIFE_CRITICAL


class Simulation:
    """One run. ``run()`` may be called once."""

    def __init__(self, scenario: Scenario, seed: int | None = None, *, healing: bool = True,
                 policy: Policy | None = None, event_log: bool = False,
                 predictive: bool = True) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.healing = healing
        self.policy = policy if policy is not None else default_policy(scenario)
        self.event_log = event_log
        # The predictive monitor, the live one's logic, fed from this run's counters.
        self.monitor = (PredictiveMonitor(self.policy.monitor, self.policy.monitor_per_service)
                        if healing and predictive else None)
        # Recurring failures, learnt from this run's detections, prevented ahead of time.
        self.recognizer = PatternRecognizer() if self.monitor is not None else None
        # memory forecast to its limit (learning.resources), read with the monitor's buckets
        self.memory = MemoryGrowth() if self.monitor is not None else None
        self.prevention = ProactivePreventionEngine(lead_s=300.0)
        self.predictions: list[dict[str, Any]] = []
        self.clock = ManualClock(0.0, scenario.start)
        self.world = World(scenario, self.seed)
        n = int(scenario.duration_s) + 2
        self.logs = {name: ServiceLog(array("I", bytes(4 * n)), array("I", bytes(4 * n)),
                                      array("I", bytes(4 * n)), array("I", bytes(4 * n)))
                     for name in scenario.services}
        self.detections: list[Detection] = []
        self.steps: list[dict[str, Any]] = []
        self.run_summaries: list[dict[str, Any]] = []
        self.violations = 0
        self.requests = 0
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = itertools.count()
        self._pending: list[TriggerEvent] = []
        self.rng = random.Random(f"{self.seed}:engine")  # recovery actions' jitter
        self._random = self.rng.random
        self._rules = {name: self.policy.error_rule(name) for name in scenario.services}
        self.recorder = OutcomeCounter(self.logs, random.Random(f"{self.seed}:sample")
                                  if event_log else None, SAMPLE_RATE)
        self.audit = RunAudit(keep=event_log)
        self._steps_expected = 0
        # What each service's answers must pass: its strategy's integrity check. A service
        # without one (a fail-safe service has no strategy) has no check to fail.
        self._checks = {s.service: s.integrity_check for s in self.policy.strategies}
        self._sound = {n: a for n, a in self.world.answers.items()
                       if (c := self._checks.get(n)) is None or c.reason(a) is None}
        if healing:
            self._build_guard()

    # -- set-up -------------------------------------------------------------------------

    def _build_guard(self) -> None:
        validator = ClinicalSafetyValidator()
        registry = FallbackStrategyRegistry(validator, list(self.policy.strategies))
        world, clock = self.world, self.clock
        for spec in self.scenario.services.values():
            strategy = registry.get(spec.name)
            for tier in strategy.tiers if strategy is not None else ():
                if tier.method is TierMethod.ALTERNATIVE_PROVIDER:
                    provider = tier.provider
                    if provider in spec.providers:
                        registry.register_provider(spec.name, provider, _caller(
                            world, clock, spec.name, provider))
                    else:  # a provider the strategy names but the scenario does not model
                        registry.register_provider(spec.name, provider,
                                                   _steady(spec.name))
                elif tier.handler is not None:
                    registry.register_handler(spec.name, tier.handler, _steady(spec.name))
        self.breakers = CircuitBreakerRegistry(clock, self.policy.circuit)
        self.breakers.add_listener(self._on_circuit_event)
        primaries = {n: s.primary for n, s in self.scenario.services.items()}
        # callers of a service whose primary's circuit is open (or forced) are answered by
        # its fallbacks: its dependents no longer feel its primary's faults
        self.world.off_primary = lambda service: self.breakers.get(
            service, primaries[service]).state in (CircuitState.OPEN, CircuitState.FORCED_OPEN)
        self.guard = Guard(clock=clock, breakers=self.breakers, fallbacks=registry,
                           cache=FallbackCache(key=b"simulation"), validator=validator,
                           sink=self.recorder, audit=self.audit)
        self._call = self.guard.call
        self.queue = RecoveryQueue(list(self.policy.workflows), self.policy.cooldown_s)
        self.health = {(n, p): HealthTracker(f"{n}:{p}", self.policy.health)
                       for n, spec in self.scenario.services.items() for p in spec.providers}
        self.validator = validator

    # -- the loop -------------------------------------------------------------------------

    def run(self, progress: Callable[[float, int], None] | None = None) -> RunResult:
        """Run to the scenario's end; ``progress(simulated_s, requests)`` is called every
        simulated minute (for a progress bar; it may raise KeyboardInterrupt to stop)."""
        sc = self.scenario
        end = sc.duration_s
        push = self._push
        names = list(sc.services)
        # One Poisson stream per kind of request of each service (a split Poisson process is
        # Poisson): a service's mix costs no draw per request. The first kind keeps the
        # service's own seed, so a service without a mix replays as it always did.
        streams = [(n, k, share * sc.services[n].rps, ClinicalContext(op, crit))
                   for n in names
                   for k, (share, op, crit) in enumerate(sc.services[n].requests)]
        arrivals = [random.Random(f"{self.seed}:{n}:arrivals" if k == 0 else
                                  f"{self.seed}:{n}:{k}:arrivals") for n, k, _, _ in streams]
        rates = [rate for _, _, rate, _ in streams]
        # random.expovariate's own formula, inlined in the loop below (the same draws, one
        # call fewer a request)
        draws, ln = [a.random for a in arrivals], math.log
        for i in range(len(streams)):
            push(arrivals[i].expovariate(rates[i]), _ARRIVAL, i)
        for f in self.world.instances:
            push(f.start, _FAULT_START, f)
            push(f.end, _FAULT_END, f)
        if self.healing:
            interval = self.policy.health.interval_s
            checks = [(n, p) for n in names for p in sc.services[n].providers]
            for i, check in enumerate(checks):  # staggered, as real checkers drift apart
                push(interval * (i + 1) / (len(checks) + 1), _HEALTH, check)
            push(self.policy.error_check_s, _THRESHOLD, None)
            if self.monitor is not None:
                push(self.monitor.policy.bucket_s, _MONITOR, None)
            if self.recognizer is not None:
                push(_LEARN_S, _LEARN, None)
                push(_PREVENT_S, _PREVENT, None)
        if progress is not None:
            push(_PROGRESS_S, _TIMER, lambda: self._progress(progress))
        request = self._request_healing if self.healing else self._request_baseline
        targets = [(n, ctx, _caller(self.world, self.clock, n, sc.services[n].primary),
                    sc.services[n].primary, self.logs[n]) for n, _, _, ctx in streams]
        heap = self._heap
        heappop = heapq.heappop
        set_clock = self.clock.set
        while heap:
            t, _, kind, payload = heap[0]
            if t >= end:
                break
            heappop(heap)
            if kind == _ARRIVAL:
                # This stream's arrivals up to the next other event, without the heap: at tens
                # of requests a second nearly every event is an arrival. An event due at the
                # same time as an arrival goes first, as the heap's order would have it.
                name, ctx, fn, primary, log = targets[payload]
                draw, rate = draws[payload], rates[payload]
                while True:
                    set_clock(t)
                    request(name, ctx, fn, primary, log, t)
                    t -= ln(1.0 - draw()) / rate
                    if self._pending:
                        self._admit()
                    if t >= end or (heap and heap[0][0] <= t):
                        break
                push(t, _ARRIVAL, payload)
                continue
            set_clock(t)
            if kind == _FAULT_START:
                self.world.fault_started(payload)
            elif kind == _FAULT_END:
                self.world.fault_ended(payload)
            elif kind == _HEALTH:
                self._health_check(payload, t)
                push(t + self.policy.health.interval_s, _HEALTH, payload)
            elif kind == _THRESHOLD:
                self._threshold_check(t)
                push(t + self.policy.error_check_s, _THRESHOLD, None)
            elif kind == _LEARN:
                self._learn()
                push(t + _LEARN_S, _LEARN, None)
            elif kind == _PREVENT:
                self._prevent()
                push(t + _PREVENT_S, _PREVENT, None)
            elif kind == _MONITOR:
                self._monitor_tick(t)
                push(t + self.monitor.policy.bucket_s, _MONITOR, None)  # type: ignore[union-attr]
            else:
                payload()
            if self._pending:
                self._admit()
        return RunResult(
            sc, self.seed, self.healing, self.logs, self.world.instances, self.detections,
            self.steps, self.run_summaries, self.violations,
            self.recorder.failures + self._steps_expected, self.audit.written, self.requests,
            self.recorder.sampled, self.audit.records)

    def _progress(self, report: Callable[[float, int], None]) -> None:
        report(self.clock.now(), self.requests)
        self.after(_PROGRESS_S, lambda: self._progress(report))

    def _push(self, t: float, kind: int, payload: Any) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), kind, payload))

    def caller(self, service: str, provider: str | None) -> Callable[..., Any]:
        """A call of ``provider`` (None: the service's primary) in this run's world."""
        return _caller(self.world, self.clock, service, provider)

    def after(self, delay_s: float, fn: Callable[[], None]) -> None:
        self._push(self.clock.now() + delay_s, _TIMER, fn)

    # -- requests -------------------------------------------------------------------------

    def _request_healing(self, name: str, ctx: ClinicalContext, fn: Callable[..., Any],
                         primary: str, log: ServiceLog, t: float) -> None:
        # The hot loop of the simulator: every request of every run passes here once.
        sec = int(t)
        log.total[sec] += 1
        self.requests += 1
        rec = self.recorder
        rec.sec = sec
        rec.last_kind = None
        key = _KEYS[int(self._random() * _QUESTIONS)]
        try:
            r = self._call(name, fn, context=ctx, provider=primary, cache_key=key)
        except (SelfHealError, ProviderError):
            log.impact["unavailable"] += 1
            return
        method = r.method
        # the common case needs no check: the primary's answer is the world's sound one
        if (method is not None or r.data is not self._sound.get(name)) and \
                not self._verify(name, ctx, r.data, method):
            log.impact["unavailable"] += 1
            return
        log.served[sec] += 1
        if r.tier == "primary":
            log.impact["none"] += 1
        elif method is TierMethod.ALTERNATIVE_PROVIDER:
            log.impact["none" if rec.last_kind in NOT_CALLED else "delay"] += 1
        else:
            log.impact["degraded"] += 1

    def _request_baseline(self, name: str, ctx: ClinicalContext, fn: Callable[..., Any],
                          primary: str, log: ServiceLog, t: float) -> None:
        sec = int(t)
        log.total[sec] += 1
        self.requests += 1
        try:
            data = fn()
        except ProviderError:
            log.impact["unavailable"] += 1
            return
        if not self._verify(name, ctx, data, None):
            log.impact["unavailable"] += 1
            return
        log.served[sec] += 1
        log.impact["none"] += 1

    def _verify(self, name: str, ctx: ClinicalContext, data: Any, method: Any) -> bool:
        """An independent check of what was served (the integrity violations of the outcome
        metrics). A violating answer reached the user, but it does not count as serving them
        well."""
        check = self._checks.get(name)
        # The world hands out one good answer object per service (nothing modifies it),
        # checked once at the start; anything else (a wrong answer, a cached copy) is checked.
        bad = check is not None and data is not self._sound.get(name) and \
            check.reason(data) is not None
        if method is not None and not bad:
            bad = ((method is TierMethod.CACHED_DATA and ctx.operation_type is _PRESCRIPTIVE)
                   or ctx.criticality is _LIFE_CRITICAL)
        if bad:
            self.violations += 1
        return not bad

    # -- detection ------------------------------------------------------------------------

    def _on_circuit_event(self, event: Any) -> None:
        # Runs inside the guard's call: only note it; _admit runs after the call.
        if isinstance(event, CircuitTransitioned) and event.to_state is CircuitState.OPEN:
            service, _, provider = event.circuit.partition(":")
            spec = self.scenario.services.get(service)
            # an alternative's circuit opening is an alert; the primary's starts a workflow
            self._detect(service, "circuit_open", event.circuit,
                         trigger=spec is not None and provider == spec.primary)

    def _detect(self, service: str, signal: str, detail: str, trigger: bool = True) -> None:
        self.detections.append(Detection(self.clock.now(), service, signal, detail))
        if trigger:
            self._pending.append(TriggerEvent(Trigger(signal), service, detail))

    def _health_check(self, check: tuple[str, str], t: float) -> None:
        """Every provider of every service is checked: an alternative must be known good
        before traffic fails over to it. Only the primary's failure starts a workflow; an
        alternative's is a detection (an operator's alert) and nothing more."""
        service, provider = check
        ok = self.world.probe(service, provider, t)
        events = self.health[check].observe(CheckResult.OK if ok else CheckResult.FAILED,
                                            None, t, self.clock.utcnow(), "probe failed")
        for e in events:
            if isinstance(e, HealthCheckFailed):
                primary = provider == self.scenario.services[service].primary
                self._detect(service, "health_check_failed", f"{service}:{provider}",
                             trigger=primary)

    def _threshold_check(self, t: float) -> None:
        sec = int(t)
        for name, log in self.logs.items():
            rule = self._rules[name]  # the live orchestrator's rule (healing.recovery)
            lo = max(0, sec - int(rule.window_s))
            calls = sum(log.calls[lo:sec])
            if calls < rule.min_calls:
                continue
            errors = sum(log.errors[lo:sec])
            recent = max(lo, sec - max(1, int(rule.recent_s)))
            if rule.fires(errors, calls, sum(log.errors[recent:sec]),
                          sum(log.calls[recent:sec])):
                self._detect(name, "error_threshold", rule.describe(errors, calls))

    def _monitor_tick(self, t: float) -> None:
        monitor = self.monitor
        assert monitor is not None
        hi = int(t)
        lo = max(0, hi - int(monitor.policy.bucket_s))
        for name, log in self.logs.items():
            monitor.observe(name, lo, sum(log.calls[lo:hi]), sum(log.errors[lo:hi]))
        for a in monitor.tick(t):
            self._detect(a.service, "anomaly", a.detail)
        assert self.memory is not None
        for name in self.logs:  # each service's fullest replica, as the live monitor reads
            self.memory.observe(name, name, t, self.world.memory(name, t), 1.0)
        for m in self.memory.check(t):
            self._detect(m.service, "memory_growth", m.describe())

    def _learn(self) -> None:
        assert self.recognizer is not None
        offset = self.clock.wall() - self.clock.now()  # monotonic → UTC epoch
        events = [FailureEvent(d.service, d.at + offset, d.signal) for d in self.detections]
        self.prevention.patterns = self.recognizer.fit(events)

    def _prevent(self) -> None:
        for action in self.prevention.due(self.clock.wall()):
            p = action.pattern
            self.predictions.append({"at": round(self.clock.now(), 3), "service": p.service,
                                     "pattern": p.describe()})
            self._pending.append(TriggerEvent(Trigger.PREDICTED, p.service, p.describe()))

    # -- recovery -------------------------------------------------------------------------

    def _admit(self) -> None:
        pending, self._pending = self._pending, []
        now = self.clock.now()
        for event in pending:
            self.queue.submit(event, now)
        while (nxt := self.queue.next()) is not None:
            WorkflowRun(self, *nxt).start()

    def record_step(self, run: WorkflowRun, status: str, index: int, action: str,
                    inputs: Any, result: Any, error: str | None, duration_s: float,
                    validation: Any, rollback: bool) -> None:
        now = self.clock.now()
        entry = {"run": run.run_id, "workflow": run.workflow.id, "service": run.workflow.service,
                 "step": index, "action": action, "status": status, "at": round(now, 3),
                 "result": result, "error": error, "duration_s": round(duration_s, 3),
                 "rollback": rollback}
        self.steps.append(entry)
        self._steps_expected += 1
        with contextlib.suppress(Exception):  # a lost record shows in audit completeness
            self.audit.append(recovery_step(
                service=run.workflow.service, at=self.clock.wall(), workflow_id=run.run_id,
                step=index, action=action, status=status, inputs=dict(inputs or {}),
                result={"value": result, "error": error}, duration_s=duration_s,
                validation=validation, record_id=f"{run.run_id}:{len(self.steps)}"))


def _caller(world: World, clock: ManualClock, service: str,
            provider: str | None) -> Callable[..., Any]:
    return world.caller(service, provider or world.services[service].spec.primary, clock.now)


def _steady(service: str) -> Callable[..., Any]:
    """A tier the scenario does not model (a rule engine, say): it answers."""
    def fn(*_args: Any, **_kwargs: Any) -> Any:
        return good_answer(service)
    return fn
