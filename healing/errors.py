"""The one tree of selfheal errors.

Errors carry their facts as fields so the API and the audit trail can render them without
parsing strings; messages say what happened, to which thing, and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CallRejected",
    "CallShed",
    "CallTimedOut",
    "CircuitOpenError",
    "ClinicalSafetyError",
    "ConfigError",
    "DeadlineExceeded",
    "FallbackExhausted",
    "IllegalTransition",
    "IntegrityCheckFailed",
    "RetryExhausted",
    "RoutedAway",
    "SelfHealError",
    "TierFailure",
    "UnsafeStrategyError",
]


class SelfHealError(Exception):
    """Root of every error selfheal raises on purpose."""


class ConfigError(SelfHealError, ValueError):
    """A configuration value is invalid; names the field and the value."""

    def __init__(self, field: str, value: Any, reason: str, *, source: str | None = None) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field} {reason}, got {value!r}")


class UnsafeStrategyError(ConfigError):
    """A fallback strategy would break a clinical safety rule; refused when registered."""


class IllegalTransition(SelfHealError):
    """A circuit was asked to move between two states that the transition table forbids."""

    def __init__(self, name: str, from_: Any, to: Any) -> None:
        self.name, self.from_, self.to = name, from_, to
        super().__init__(
            f"circuit {name!r} cannot move from {from_.name} to {to.name}; "
            "reset() returns any circuit to CLOSED"
        )


class CallRejected(SelfHealError):
    """A call was not run at all. Abstract: raise a subclass."""


class CircuitOpenError(CallRejected):
    """The circuit refused the call; ``retry_after_s`` says when it will next admit one."""

    def __init__(self, service: str, state: Any, retry_after_s: float | None) -> None:
        self.service, self.state, self.retry_after_s = service, state, retry_after_s
        if retry_after_s is not None:
            when = f"retry after {retry_after_s:.1f} s"
        elif getattr(state, "name", "") == "HALF_OPEN":
            when = "its trial calls are in flight; retry shortly"
        else:
            when = "it stays open until an operator releases it"
        super().__init__(f"circuit {service!r} is {state.name}; {when}")


class RoutedAway(CallRejected):
    """The primary was not called: the service's traffic is routed to a fallback tier."""

    def __init__(self, service: str, tier: str, reason: str) -> None:
        self.service, self.tier, self.reason = service, tier, reason
        super().__init__(f"traffic for {service!r} is routed to {tier!r}: {reason}")


class CallShed(CallRejected):
    """Admission refused the call: the provider's concurrency limit is full for this request's
    acuity (or its queue wait ran out, or its deadline had passed)."""

    def __init__(self, service: str, provider: str | None, acuity: str, reason: str) -> None:
        self.service, self.provider, self.acuity, self.reason = service, provider, acuity, reason
        where = f"{service}:{provider}" if provider else service
        super().__init__(f"{acuity} call to {where!r} not admitted: {reason}")


class CallTimedOut(SelfHealError, TimeoutError):
    """The call took longer than it was given. A synchronous call cannot be interrupted in
    Python: its thread runs on, unwaited for, and keeps its place in the bulkhead until it
    ends, so hung calls can never hold more than the provider's limit."""

    def __init__(self, service: str, provider: str | None, timeout_s: float) -> None:
        self.service, self.provider, self.timeout_s = service, provider, timeout_s
        where = f"{service}:{provider}" if provider else service
        super().__init__(f"call to {where!r} gave no answer within {timeout_s:.3g} s")


class ClinicalSafetyError(SelfHealError):
    """A clinical service failed and safety forbids any substitute; carries guidance.

    Raised for life-critical operations and critical services, which never fall back: the
    clinician must be told plainly that the answer is missing and what to do instead.
    """

    def __init__(
        self,
        service: str,
        reason: str,
        guidance: str,
        *,
        operation_type: Any = None,
        criticality: Any = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.service, self.reason, self.guidance = service, reason, guidance
        self.operation_type, self.criticality = operation_type, criticality
        self.retry_after_s = retry_after_s
        super().__init__(
            f"critical service {service!r} failed ({reason}); manual intervention required. "
            f"Guidance: {guidance}"
        )


@dataclass(frozen=True, slots=True)
class TierFailure:
    """Why one fallback tier did not answer."""

    tier: str
    reason: str


class FallbackExhausted(SelfHealError):
    """The primary failed and no fallback tier produced a servable answer."""

    def __init__(self, service: str, attempts: Sequence[TierFailure],
                 guidance: str | None = None) -> None:
        self.service = service
        self.attempts = tuple(attempts)
        self.guidance = guidance
        listed = "; ".join(f"{a.tier}: {a.reason}" for a in self.attempts) or "no tiers"
        advice = f" Guidance: {guidance}" if guidance else ""
        super().__init__(f"all fallback tiers failed for service {service!r} ({listed}).{advice}")


class IntegrityCheckFailed(SelfHealError):
    """A result failed its data integrity check and must not be served."""

    def __init__(self, tier: str, reason: str) -> None:
        self.tier, self.reason = tier, reason
        super().__init__(f"{tier} result failed its integrity check: {reason}")


class RetryExhausted(SelfHealError):
    """Retrying stopped without success; ``last`` is the final attempt's outcome."""

    def __init__(self, attempts: int, reason: str, last: Any) -> None:
        self.attempts, self.reason, self.last = attempts, reason, last
        super().__init__(f"gave up after {attempts} attempt(s): {reason}")


class DeadlineExceeded(RetryExhausted):
    """Retrying stopped because the next step would overrun the deadline."""
