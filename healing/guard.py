"""``guard``: the one entry point application code uses to call a clinical service.

For every call it runs, in order: clinical safety (may this request ever fall back?), the
circuit breaker (may the primary be called now?), the operation, the fallback tiers if the
primary failed or was refused, and the outcome record handed to the sink. Nothing on this
path waits on the network; the sink only buffers.

Call form::

    result = guard.call("clinical_reasoning", ask_model, question,
                        context=ClinicalContext("diagnostic", "high", patient_id=pid),
                        provider="gemini:pro", cache_key=question_hash)
    result.data, result.tier, result.warning

Decorator form (sync or async functions alike)::

    @guard.protect("care_locator", cache_key=lambda postcode: postcode)
    async def find_care(postcode): ...

``context``, ``provider``, ``cache_key`` and ``deadline`` are the guard's own keywords;
every other argument goes to the operation. With a :class:`~healing.limits.CallGate`, calls
are bounded by their provider's call policy (timeouts, bulkheads, adaptive limits, budgeted
retries: :mod:`healing.limited`). The result is always a :class:`FallbackResult`, so the caller
always sees which tier answered and the warning that must go with it. Failures raise
:class:`ClinicalSafetyError` (critical services, life-critical requests: never a fallback),
:class:`FallbackExhausted` (every tier failed), :class:`CircuitOpenError` or the operation's
own exception (no strategy to fall back to).
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from .audit import AuditRecord, AuditSink
from .cache import FallbackCache
from .clock import Clock, SystemClock
from .errors import (
    CircuitOpenError,
    ClinicalSafetyError,
    FallbackExhausted,
    IntegrityCheckFailed,
    RoutedAway,
)
from .fallback import (
    FallbackResult,
    FallbackStrategyRegistry,
    Plan,
    arun_plan,
    plan_fallback,
    record_answer,
    run_plan,
)
from .guard_audit import failure_record
from .limited import acall_limited, call_limited
from .limits import CallGate
from .outcome import InMemorySink, OutcomeRecord, OutcomeSink
from .registry import CircuitBreakerRegistry
from .routing import RouteTable
from .safety import (
    INFORMATIONAL_CONTEXT,
    ClinicalContext,
    ClinicalSafetyValidator,
    Criticality,
    OperationType,
)
from .strategies import default_strategies

__all__ = ["Guard", "default_guard", "guard"]

_log = logging.getLogger("selfheal.guard")
_LIFE_CRITICAL = Criticality.LIFE_CRITICAL
_PRESCRIPTIVE = OperationType.PRESCRIPTIVE
_PRIMARY = "primary"


class Guard:
    """Safety, breaker, operation, fallback and outcome recording, for sync and async code.

    Args:
        clock: time for decisions and records (a ``ManualClock`` in tests and the simulator).
        breakers: circuit breakers by (service, provider).
        fallbacks: strategies, providers and handlers; defaults to the seed's four strategies.
        cache: the bounded cache behind ``cached_data`` tiers.
        validator: the clinical safety rules.
        sink: where outcome records go.
        audit: where failure events go, durably, before the call returns (None: nowhere).
        routes: cluster-wide routes to a fallback tier (see :mod:`healing.routing`).
        gate: call policies (timeouts, bulkheads, adaptive limits, retries; see
            :mod:`healing.limited`); None: calls are not bounded.
    """

    def __init__(
        self, *, clock: Clock | None = None, breakers: CircuitBreakerRegistry | None = None,
        fallbacks: FallbackStrategyRegistry | None = None, cache: FallbackCache | None = None,
        validator: ClinicalSafetyValidator | None = None, sink: OutcomeSink | None = None,
        audit: AuditSink | None = None, routes: RouteTable | None = None,
        gate: CallGate | None = None,
    ) -> None:
        self.clock = clock if clock is not None else SystemClock()
        self.validator = validator if validator is not None else ClinicalSafetyValidator()
        self.fallbacks = fallbacks if fallbacks is not None else FallbackStrategyRegistry(
            self.validator, default_strategies())
        self.breakers = breakers if breakers is not None else CircuitBreakerRegistry(self.clock)
        self.cache = cache if cache is not None else FallbackCache()
        self.sink = sink if sink is not None else InMemorySink()
        self.audit = audit
        self.routes = routes if routes is not None else RouteTable()
        self.gate = gate
        self.audit_failures = 0  # records the audit sink could not make durable

    # -- call forms --------------------------------------------------------------------

    def call(self, service: str, fn: Callable[..., Any], *args: Any,
             context: ClinicalContext = INFORMATIONAL_CONTEXT, provider: str | None = None,
             cache_key: str | None = None, deadline: float | None = None,
             **kwargs: Any) -> FallbackResult:
        """Run ``fn(*args, **kwargs)`` as a guarded call to ``service``; ``deadline`` is the
        time (on this guard's clock, see :meth:`deadline_in`) the answer is needed by."""
        gate = self.gate
        if gate is not None or deadline is not None:
            lane = gate.lane(service, provider) if gate is not None else None
            if lane is not None or deadline is not None:
                return call_limited(self, lane, service, fn, args, kwargs, context, provider,
                                    cache_key, deadline)
        clock = self.clock
        t0 = clock.now()
        if self.routes.routes:
            routed = self._routed(service, context)
            if routed is not None:
                return self._fail_sync(service, provider, context, cache_key, args, kwargs,
                                       routed[0], "routed", t0, routed[1])
        breaker = self.breakers.get(service, provider, t0)
        permit = breaker.allow(t0)
        if not permit.allowed:
            error: BaseException = CircuitOpenError(breaker.name, permit.state,
                                                    permit.retry_after_s(t0))  # type: ignore[union-attr]
            return self._fail_sync(service, provider, context, cache_key, args, kwargs, error,
                                   "rejected", t0)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            t1 = clock.now()
            breaker.on_exception(permit, exc, t1 - t0, t1)  # type: ignore[arg-type]
            return self._fail_sync(service, provider, context, cache_key, args, kwargs, exc,
                                   type(exc).__name__, t0)
        except BaseException:
            breaker.release(permit)  # type: ignore[arg-type]
            raise
        served = self._primary_result(service, provider, context, cache_key, breaker, permit,
                                      result, t0)
        if type(served) is FallbackResult:
            return served
        return self._fail_sync(service, provider, context, cache_key, args, kwargs, served,
                               "integrity", t0)

    __call__ = call

    async def acall(self, service: str, fn: Callable[..., Any], *args: Any,
                    context: ClinicalContext = INFORMATIONAL_CONTEXT,
                    provider: str | None = None, cache_key: str | None = None,
                    deadline: float | None = None, **kwargs: Any) -> FallbackResult:
        """The async form of :meth:`call`; ``fn`` may return an awaitable or a value."""
        gate = self.gate
        if gate is not None or deadline is not None:
            lane = gate.lane(service, provider) if gate is not None else None
            if lane is not None or deadline is not None:
                return await acall_limited(self, lane, service, fn, args, kwargs, context,
                                           provider, cache_key, deadline)
        clock = self.clock
        t0 = clock.now()
        if self.routes.routes:
            routed = self._routed(service, context)
            if routed is not None:
                return await self._fail_async(service, provider, context, cache_key, args,
                                              kwargs, routed[0], "routed", t0, routed[1])
        breaker = self.breakers.get(service, provider, t0)
        permit = breaker.allow(t0)
        if not permit.allowed:
            error: BaseException = CircuitOpenError(breaker.name, permit.state,
                                                    permit.retry_after_s(t0))  # type: ignore[union-attr]
            return await self._fail_async(service, provider, context, cache_key, args, kwargs,
                                          error, "rejected", t0)
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            t1 = clock.now()
            breaker.on_exception(permit, exc, t1 - t0, t1)  # type: ignore[arg-type]
            return await self._fail_async(service, provider, context, cache_key, args, kwargs,
                                          exc, type(exc).__name__, t0)
        except BaseException:  # cancelled: the trial permit goes back, nothing is counted
            breaker.release(permit)  # type: ignore[arg-type]
            raise
        served = self._primary_result(service, provider, context, cache_key, breaker, permit,
                                      result, t0)
        if type(served) is FallbackResult:
            return served
        return await self._fail_async(service, provider, context, cache_key, args, kwargs,
                                      served, "integrity", t0)

    def protect(self, service: str, *, context: ClinicalContext = INFORMATIONAL_CONTEXT,
                provider: str | None = None, cache_key: Callable[..., str] | None = None,
                deadline_s: float | None = None) -> Callable[[Callable[..., Any]],
                                                             Callable[..., Any]]:
        """Decorator form. ``cache_key`` derives the key from the call's arguments;
        ``deadline_s`` gives every call a deadline that many seconds after it starts."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            if inspect.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> FallbackResult:
                    key = cache_key(*args, **kwargs) if cache_key is not None else None
                    return await self.acall(service, fn, *args, context=context,
                                            provider=provider, cache_key=key,
                                            deadline=self._deadline(deadline_s), **kwargs)
                return async_wrapper

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> FallbackResult:
                key = cache_key(*args, **kwargs) if cache_key is not None else None
                return self.call(service, fn, *args, context=context, provider=provider,
                                 cache_key=key, deadline=self._deadline(deadline_s), **kwargs)
            return wrapper

        return decorate

    def deadline_in(self, seconds: float) -> float:
        """The deadline ``seconds`` from now, on this guard's clock."""
        return self.clock.now() + seconds

    def _deadline(self, seconds: float | None) -> float | None:
        return None if seconds is None else self.clock.now() + seconds

    # The seed's names for the same entry point (2.3, 5.3): both apply every rule above.
    with_fallback = call
    execute_with_fail_safe = call

    # -- internals ---------------------------------------------------------------------

    def _routed(self, service: str, context: ClinicalContext) -> tuple[RoutedAway, int] | None:
        """The route this request obeys and the tier it starts at, or None: call the primary."""
        route = self.routes.get(service)
        if route is None or self.validator.is_fail_safe(service, context) \
                or not route.active(self.clock.wall()):
            return None
        strategy = self.fallbacks.get(service)
        if strategy is None or not strategy.serves(context):
            return None
        start = strategy.find_tier(route.tier)
        if start is None:
            return None
        verdict = self.validator.validate_tier(strategy.tiers[start], context, service,
                                               has_integrity_check=strategy.integrity_check
                                               is not None)
        if not verdict.allowed:
            return None
        return RoutedAway(service, route.tier, route.reason), start

    def _primary_result(self, service: str, provider: str | None, context: ClinicalContext,
                        cache_key: str | None, breaker: Any, permit: Any, result: Any,
                        t0: float) -> FallbackResult | IntegrityCheckFailed:
        """Record a returned result: the answer to serve, or why it may not be served."""
        t1 = self.clock.now()
        strategy = self.fallbacks.get(service)
        failed, reason = record_answer(breaker, permit, strategy, result, t1 - t0, t1)
        if failed:
            return IntegrityCheckFailed(
                "primary", reason or "the answer failed the circuit's result check")
        return self._answered(service, provider, _PRIMARY, context, cache_key, strategy,
                              result, t0, t1)

    def _answered(self, service: str, provider: str | None, tier: str,
                  context: ClinicalContext, cache_key: str | None, strategy: Any,
                  result: Any, t0: float, t1: float) -> FallbackResult:
        """A provider's full answer (the primary's, or a hedge's) passed its checks: keep it
        for the cache tier, record the outcome, serve it."""
        if (cache_key is not None and strategy is not None and strategy.has_cache_tier
                and context.operation_type is not _PRESCRIPTIVE):
            # Prescriptive answers are never cached, so they can never be served stale.
            self.cache.put(self.cache.key_for(service, context, cache_key), result, t1)
        self._emit(OutcomeRecord(service, provider, True, t1 - t0, None, tier, None,
                                 context.operation_type, context.criticality,
                                 self.clock.wall()))
        return FallbackResult(result, tier, 0, None, None, None,
                              strategy is not None and strategy.integrity_check is not None)

    def _retried(self, service: str) -> None:
        """A failed attempt of ``service``'s primary that a retry follows, to the sink's
        ``retried`` (where it has one): a request fails only if its retry fails too, so a
        provider failing 20 % of its attempts fails 4 % of requests, and a detector reading
        request outcomes alone sees a leak or a ramp late (docs/learning.md)."""
        hook = getattr(self.sink, "retried", None)
        if hook is None:
            return
        try:
            hook(service, self.clock.wall())
        except Exception:
            _log.exception("outcome sink %r failed; a retried attempt of %s not counted",
                           self.sink, service)

    def _emit(self, record: OutcomeRecord) -> None:
        # A broken sink must cost the caller neither the answer nor the error it is owed.
        try:
            self.sink.record(record)
        except Exception:
            _log.exception("outcome sink %r failed; record for %s dropped",
                           self.sink, record.service)

    def _failure_plan(self, service: str, provider: str | None, context: ClinicalContext,
                      cache_key: str | None, args: tuple[Any, ...], kwargs: dict[str, Any],
                      error: BaseException, kind: str, t0: float, start: int = 0,
                      deadline: float | None = None) -> Plan:
        """Safety's verdict on a failed call: a fallback plan, or the error to raise."""
        if service in self.validator.critical_services or context.criticality is _LIFE_CRITICAL:
            self._record_failure(service, provider, context, kind, t0)
            raise ClinicalSafetyError(
                service, str(error), self.validator.guidance_for(service),
                operation_type=context.operation_type, criticality=context.criticality,
                retry_after_s=getattr(error, "retry_after_s", None)) from error
        strategy = self.fallbacks.get(service)
        if strategy is None:
            self._record_failure(service, provider, context, kind, t0)
            raise error
        return plan_fallback(strategy, context=context, registry=self.fallbacks,
                             breakers=self.breakers, cache=self.cache, clock=self.clock,
                             cache_key=cache_key, args=args, kwargs=kwargs, start=start,
                             gate=self.gate, deadline=deadline)

    def _fail_sync(self, service: str, provider: str | None, context: ClinicalContext,
                   cache_key: str | None, args: tuple[Any, ...], kwargs: dict[str, Any],
                   error: BaseException, kind: str, t0: float,
                   start: int = 0, *, deadline: float | None = None) -> FallbackResult:
        try:
            plan = self._failure_plan(service, provider, context, cache_key, args, kwargs,
                                      error, kind, t0, start, deadline)
            served = run_plan(plan)
        except BaseException as final:
            self._audit_sync(self._failure_record(service, provider, context, kind, error,
                                                  None, final))
            if isinstance(final, FallbackExhausted):
                raise self._exhausted(service, provider, context, kind, t0, final) from error
            raise
        self._audit_sync(self._failure_record(service, provider, context, kind, error, served,
                                              None))
        return self._served(service, provider, context, kind, t0, served)

    async def _fail_async(self, service: str, provider: str | None, context: ClinicalContext,
                          cache_key: str | None, args: tuple[Any, ...], kwargs: dict[str, Any],
                          error: BaseException, kind: str, t0: float,
                          start: int = 0, *, deadline: float | None = None) -> FallbackResult:
        try:
            plan = self._failure_plan(service, provider, context, cache_key, args, kwargs,
                                      error, kind, t0, start, deadline)
            served = await arun_plan(plan)
        except BaseException as final:
            await self._audit_async(self._failure_record(service, provider, context, kind,
                                                         error, None, final))
            if isinstance(final, FallbackExhausted):
                raise self._exhausted(service, provider, context, kind, t0, final) from error
            raise
        await self._audit_async(self._failure_record(service, provider, context, kind, error,
                                                     served, None))
        return self._served(service, provider, context, kind, t0, served)

    # -- audit -------------------------------------------------------------------------

    def _failure_record(self, service: str, provider: str | None, context: ClinicalContext,
                        kind: str, error: BaseException, served: FallbackResult | None,
                        final: BaseException | None) -> AuditRecord | None:
        """The failure event for the audit trail, or None if nothing needs one."""
        if self.audit is None or not context.requires_audit:
            return None
        return failure_record(service, provider, context, kind, error, served, final,
                              self.fallbacks.get(service), self.audit.pseudonymize,
                              self.clock.wall())

    def _audit_sync(self, record: AuditRecord | None) -> None:
        if record is None:
            return
        try:
            self.audit.append(record)  # type: ignore[union-attr]
        except Exception:
            self._audit_lost(record)

    async def _audit_async(self, record: AuditRecord | None) -> None:
        if record is None:
            return
        try:
            await self.audit.aappend(record)  # type: ignore[union-attr]
        except Exception:
            self._audit_lost(record)

    def _audit_lost(self, record: AuditRecord) -> None:
        # The answer (or the explicit failure) still reaches the clinician; the lost record
        # is counted and logged loudly so operators can see the audit trail has a hole.
        self.audit_failures += 1
        _log.exception("audit record %s for %s could not be made durable",
                       record.id, record.service)

    def _served(self, service: str, provider: str | None, context: ClinicalContext, kind: str,
                t0: float, served: FallbackResult) -> FallbackResult:
        clock = self.clock
        self._emit(OutcomeRecord(service, provider, True, clock.now() - t0, kind, served.tier,
                                 served.staleness_s, context.operation_type,
                                 context.criticality, clock.wall()))
        return served

    def _exhausted(self, service: str, provider: str | None, context: ClinicalContext,
                   kind: str, t0: float, exhausted: FallbackExhausted) -> FallbackExhausted:
        self._record_failure(service, provider, context, kind, t0)
        # Every explicit failure tells the clinician what to do: the service's own guidance,
        # else the default (a service missing from the guidance map once failed with none:
        # clinical reasoning with every tier failing, in the chaos suite's multi-node run).
        return FallbackExhausted(service, exhausted.attempts,
                                 self.validator.guidance_for(service))

    def _record_failure(self, service: str, provider: str | None, context: ClinicalContext,
                        kind: str, t0: float) -> None:
        clock = self.clock
        self._emit(OutcomeRecord(service, provider, False, clock.now() - t0, kind, "none",
                                 None, context.operation_type, context.criticality,
                                 clock.wall()))


_default: Guard | None = None
_default_lock = threading.Lock()


def default_guard() -> Guard:
    """The process-wide guard on the system clock with the default strategies."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Guard()
    return _default


def guard(service: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FallbackResult:
    """``default_guard().call(...)``: the call form for code that needs no guard of its own."""
    return default_guard().call(service, fn, *args, **kwargs)
