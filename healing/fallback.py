"""Fallback strategies (seed 2.1-2.3): tiers tried in priority order, every answer checked.

A :class:`FallbackStrategy` lists a service's tiers. :func:`plan_fallback` walks them once,
as a generator that yields each call it needs made and receives its :class:`Outcome`, so
the same logic runs under the sync and the async drivers (:func:`run_plan`,
:func:`arun_plan`). Every tier is first cleared by the clinical safety validator for the
request's context, and every tier's answer must pass the strategy's integrity check or it is
not served; when no tier answers, one :class:`FallbackExhausted` lists every tier's failure.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .admission import ADMITTED
from .cache import FallbackCache
from .clock import Clock
from .config import FallbackTier, TierMethod, _check
from .errors import CallTimedOut, ConfigError, FallbackExhausted, TierFailure
from .integrity import IntegrityCheck, Predicate
from .limits import CallGate, Lane, abounded, bounded
from .outcome import Outcome
from .registry import CircuitBreakerRegistry
from .safety import ClinicalContext, ClinicalSafetyValidator, Criticality, OperationType
from .window import FAILED

__all__ = [
    "FallbackResult",
    "FallbackStrategy",
    "FallbackStrategyRegistry",
    "arun_plan",
    "plan_fallback",
    "run_plan",
]

_ALL_OPERATIONS = frozenset(OperationType)
_NON_LIFE_CRITICAL = frozenset(Criticality) - {Criticality.LIFE_CRITICAL}


class FallbackResult(NamedTuple):
    """What the caller gets: the data and where it came from.

    ``tier`` is ``"primary"`` or the label of the tier that answered
    (``alternative_provider:deepseek``, ``cached_data``…); ``staleness_s`` is the age of a
    cached answer; ``warning`` is the text that must be shown with it.
    """

    data: Any
    tier: str = "primary"
    priority: int = 0
    method: TierMethod | None = None
    staleness_s: float | None = None
    warning: str | None = None
    integrity_checked: bool = False
    passed_over: tuple[TierFailure, ...] = ()  # tiers tried before this one, and why they failed

    @property
    def from_fallback(self) -> bool:
        return self.method is not None


@dataclass(frozen=True, slots=True)
class FallbackStrategy:
    """A service's fallback tiers and the check every answer must pass.

    ``operation_types`` and ``criticalities`` say which requests the strategy was vetted for:
    a request outside them gets no fallback. The clinical rules are checked against them when
    the strategy is registered.
    """

    service: str
    tiers: tuple[FallbackTier, ...]
    integrity_check: IntegrityCheck | None = None
    stale_data_warning: bool = False
    operation_types: frozenset[OperationType] = _ALL_OPERATIONS
    criticalities: frozenset[Criticality] = _NON_LIFE_CRITICAL
    description: str = field(default="", compare=False)
    has_cache_tier: bool = field(init=False, compare=False, default=False)

    def __post_init__(self) -> None:
        _check(isinstance(self.service, str) and bool(self.service), "service", self.service,
               "must be a non-empty string")
        tiers = tuple(self.tiers)
        for i, t in enumerate(tiers):
            _check(isinstance(t, FallbackTier), f"tiers[{i}]", t, "must be a FallbackTier")
        prios = [t.priority for t in tiers]
        _check(len(set(prios)) == len(prios), "tiers", prios, "must have distinct priorities")
        object.__setattr__(self, "tiers", tuple(sorted(tiers, key=lambda t: t.priority)))
        object.__setattr__(self, "has_cache_tier",
                           any(t.method is TierMethod.CACHED_DATA for t in tiers))
        check = self.integrity_check
        if check is not None and not isinstance(check, IntegrityCheck):
            _check(callable(check), "integrity_check", check,
                   "must be an IntegrityCheck or a callable returning bool")
            object.__setattr__(self, "integrity_check", Predicate(check, "integrity check"))
        for name, kind in (("operation_types", OperationType), ("criticalities", Criticality)):
            values = getattr(self, name)
            try:
                values = frozenset(v if isinstance(v, kind) else kind(v) for v in values)
            except (TypeError, ValueError):
                raise ConfigError(name, getattr(self, name),
                                  f"must hold values of {[e.value for e in kind]}") from None
            object.__setattr__(self, name, values)

    def serves(self, context: ClinicalContext) -> bool:
        return (context.operation_type in self.operation_types
                and context.criticality in self.criticalities)

    def find_tier(self, name: str) -> int | None:
        """The index of the tier labelled ``name``, or else the first whose method it names."""
        for i, t in enumerate(self.tiers):
            if t.label == name:
                return i
        for i, t in enumerate(self.tiers):
            if t.method.value == name:
                return i
        return None


Handler = Callable[..., Any]


class FallbackStrategyRegistry:
    """Strategies by service, and the providers and handlers their tiers call.

    Registration runs the clinical safety validator: an unsafe strategy is refused here,
    before any request could reach it.
    """

    def __init__(self, validator: ClinicalSafetyValidator | None = None,
                 strategies: Iterable[FallbackStrategy] = ()) -> None:
        self.validator = validator if validator is not None else ClinicalSafetyValidator()
        self._strategies: dict[str, FallbackStrategy] = {}
        self._providers: dict[tuple[str, str], Handler] = {}
        self._handlers: dict[tuple[str, str], Handler] = {}
        for s in strategies:
            self.register(s)

    def register(self, strategy: FallbackStrategy) -> None:
        """Add or replace the strategy for ``strategy.service``.

        Raises:
            UnsafeStrategyError: the strategy breaks a clinical safety rule.
        """
        _check(isinstance(strategy, FallbackStrategy), "strategy", strategy,
               "must be a FallbackStrategy")
        self.validator.validate_strategy(strategy)
        self._strategies[strategy.service] = strategy

    def get(self, service: str) -> FallbackStrategy | None:
        return self._strategies.get(service)

    def services(self) -> list[str]:
        return sorted(self._strategies)

    def register_provider(self, service: str, provider: str, fn: Handler) -> None:
        """``fn`` answers ``service`` requests as ``provider`` (same arguments as the primary)."""
        _check(callable(fn), "fn", fn, "must be callable")
        self._providers[(service, provider)] = fn

    def register_handler(self, service: str, name: str, fn: Handler) -> None:
        """``fn`` answers ``service`` requests in degraded mode (e.g. a rule-based engine)."""
        _check(callable(fn), "fn", fn, "must be callable")
        self._handlers[(service, name)] = fn

    def provider(self, service: str, provider: str) -> Handler | None:
        return self._providers.get((service, provider))

    def handler(self, service: str, name: str) -> Handler | None:
        return self._handlers.get((service, name))


class _Call(NamedTuple):
    fn: Handler
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    # A bounded provider's call: the plan took its bulkhead place, the driver runs it within
    # ``timeout`` and frees the place when it really ends.
    lane: Lane | None = None
    timeout: float | None = None


Plan = Generator[_Call, Outcome, FallbackResult]


def plan_fallback(
    strategy: FallbackStrategy, *, context: ClinicalContext, registry: FallbackStrategyRegistry,
    breakers: CircuitBreakerRegistry, cache: FallbackCache, clock: Clock,
    cache_key: str | None, args: tuple[Any, ...], kwargs: Mapping[str, Any],
    start: int = 0, gate: CallGate | None = None, deadline: float | None = None,
) -> Plan:
    """Try ``strategy``'s tiers in order, from the ``start``-th; return the first servable
    answer. With a ``gate``, an alternative provider is bounded by its call policy and
    passed over when the request's ``deadline`` leaves it too little time.

    Raises:
        FallbackExhausted: no tier produced a servable answer; lists each tier's failure.
    """
    service = strategy.service
    check = strategy.integrity_check
    failures: list[TierFailure] = []

    def fail(tier: FallbackTier, reason: str) -> None:
        failures.append(TierFailure(tier.label, reason))

    if not strategy.serves(context):
        raise FallbackExhausted(service, [TierFailure(
            "strategy", f"not vetted for {context.operation_type.value}/"
                        f"{context.criticality.value} requests")])
    for tier in strategy.tiers[start:]:
        verdict = registry.validator.validate_tier(tier, context, service,
                                                   has_integrity_check=check is not None)
        if not verdict.allowed:
            fail(tier, f"refused by clinical safety: {verdict.reason}")
            continue
        method = tier.method
        staleness = None
        if method is TierMethod.ALTERNATIVE_PROVIDER:
            fn = registry.provider(service, tier.provider)  # type: ignore[arg-type]
            if fn is None:
                fail(tier, "no provider registered under that name")
                continue
            lane = gate.lane(service, tier.provider) if gate is not None else None
            t0 = clock.now()
            typical = lane.typical_s if lane is not None else 0.0
            if deadline is not None and deadline - t0 <= typical:
                fail(tier, "cannot answer before the request's deadline" + (
                    f" (typically takes {typical:.3g} s)" if typical else ""))
                continue
            breaker = breakers.get(service, tier.provider)
            permit = breaker.allow(t0)
            if not permit.allowed:
                after = permit.retry_after_s(t0)  # type: ignore[union-attr]
                fail(tier, "its circuit is open" + (f"; retry after {after:.1f} s"
                                                     if after is not None else ""))
                continue
            if lane is None:
                outcome = yield _Call(fn, args, kwargs)
            else:
                verdict = lane.acquire(context.acuity, deadline, queue=False)  # type: ignore[arg-type]
                if verdict != ADMITTED:
                    breaker.release(permit)  # type: ignore[arg-type]
                    fail(tier, f"not admitted: {verdict}")
                    continue
                in_flight, timeout = lane.in_flight, lane.timeout(t0, deadline)
                outcome = yield _Call(fn, args, kwargs, lane, timeout)
            t1 = clock.now()
            if lane is not None:
                timed_out = isinstance(outcome.error, CallTimedOut)
                lane.observe(timeout if timed_out else t1 - t0, in_flight,  # type: ignore[arg-type]
                             outcome.error is None, t1, timed_out)
            if outcome.error is not None:
                breaker.on_exception(permit, outcome.error, t1 - t0, t1)  # type: ignore[arg-type]
                fail(tier, f"{type(outcome.error).__name__}: {outcome.error}")
                continue
            value = outcome.value
            failed, reason = record_answer(breaker, permit, strategy, value, t1 - t0, t1)
            if failed:
                fail(tier, "integrity check failed: "
                           + (reason or "the provider's own validity check failed"))
                continue
        else:
            if method is TierMethod.CACHED_DATA:
                if cache_key is None:
                    fail(tier, "the request has no cache key, so nothing cached can match it")
                    continue
                hit = cache.get(cache.key_for(service, context, cache_key), clock.now(),
                                tier.max_staleness_s)  # type: ignore[arg-type]
                if hit is None:
                    fail(tier, f"nothing cached within {tier.max_staleness_s:g} s")
                    continue
                value, staleness = hit
            elif tier.handler is not None:
                fn = registry.handler(service, tier.handler)
                if fn is None:
                    fail(tier, "no degraded-mode handler registered under that name")
                    continue
                outcome = yield _Call(fn, args, kwargs)
                if outcome.error is not None:
                    fail(tier, f"{type(outcome.error).__name__}: {outcome.error}")
                    continue
                value = outcome.value
            else:  # a fixed response; copied so no caller can alter the next one
                value = copy.deepcopy(tier.response)
            reason = check.reason(value) if check is not None else None
            if reason is not None:
                fail(tier, f"integrity check failed: {reason}")
                continue
        return FallbackResult(value, tier.label, tier.priority, method, staleness,
                              _warning(strategy, tier, staleness), check is not None,
                              tuple(failures))
    raise FallbackExhausted(service, failures)


def record_answer(breaker: Any, permit: Any, strategy: FallbackStrategy | None, value: Any,
                  duration_s: float, now: float) -> tuple[bool, str | None]:
    """Record a provider's answer in its circuit: (failed, the integrity check's reason).

    An answer failing the strategy's integrity check counts against the circuit like an
    error, and so does one the circuit's own result check fails (failed, no reason). The
    primary (the guard), an alternative-provider tier and a hedge all judge answers here.
    """
    check = strategy.integrity_check if strategy is not None else None
    reason = check.reason(value) if check is not None else None
    code = breaker.classify_result(value, duration_s) | (FAILED if reason is not None else 0)
    breaker.record(permit, code, now)
    return bool(code & FAILED), reason


def _warning(strategy: FallbackStrategy, tier: FallbackTier, staleness: float | None) -> str | None:
    if tier.warning is not None:
        return tier.warning
    if staleness is not None and (strategy.stale_data_warning or tier.stale_data_warning):
        return (f"Using cached data from {staleness:.0f} s ago: it may not reflect the "
                "latest information.")
    return None


def run_plan(plan: Plan) -> FallbackResult:
    """Drive a fallback plan synchronously."""
    try:
        call = next(plan)
        while True:
            if call.lane is not None:
                outcome = _run_bounded(call)
            else:
                try:
                    outcome = Outcome(call.fn(*call.args, **call.kwargs), None, 0.0)
                except Exception as exc:
                    outcome = Outcome(None, exc, 0.0)
            call = plan.send(outcome)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _run_bounded(call: _Call) -> Outcome:
    """Run a bounded provider's call; its place is freed when the call really ends."""
    lane = call.lane
    try:
        if call.timeout is not None:
            return Outcome(bounded(lane, call.fn, call.args, call.kwargs, call.timeout,  # type: ignore[arg-type]
                                   lane.release), None, 0.0)  # type: ignore[union-attr]
        try:
            return Outcome(call.fn(*call.args, **call.kwargs), None, 0.0)
        finally:
            lane.release()  # type: ignore[union-attr]
    except Exception as exc:
        return Outcome(None, exc, 0.0)


async def _arun_bounded(call: _Call) -> Outcome:
    """The asyncio form of :func:`_run_bounded`: a timed-out awaitable is cancelled."""
    lane = call.lane
    try:
        try:
            value = call.fn(*call.args, **call.kwargs)
            if inspect.isawaitable(value):
                value = await (value if call.timeout is None
                               else abounded(lane, value, call.timeout))  # type: ignore[arg-type]
            return Outcome(value, None, 0.0)
        finally:
            lane.release()  # type: ignore[union-attr]
    except Exception as exc:
        return Outcome(None, exc, 0.0)


async def arun_plan(plan: Plan) -> FallbackResult:
    """Drive a fallback plan under asyncio; tier functions may be sync or async."""
    try:
        call = next(plan)
        while True:
            if call.lane is not None:
                outcome = await _arun_bounded(call)
                call = plan.send(outcome)
                continue
            try:
                value = call.fn(*call.args, **call.kwargs)
                if inspect.isawaitable(value):
                    value = await value
                outcome = Outcome(value, None, 0.0)
            except Exception as exc:
                outcome = Outcome(None, exc, 0.0)
            call = plan.send(outcome)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
