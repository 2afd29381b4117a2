"""Typed, validated configuration for the core.

Every config is a frozen dataclass checked in ``__post_init__``: a bad value is a
:class:`~healing.errors.ConfigError` at construction naming the field and the value, in
resilience4j's words ("failure_rate_threshold must be in (0, 1], got 1.5"). Derive variants
with :func:`dataclasses.replace`, which validates again.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = [
    "DEFAULT_FAILURE_RATE_THRESHOLD",
    "DEFAULT_MINIMUM_NUMBER_OF_CALLS",
    "DEFAULT_PERMITTED_CALLS_IN_HALF_OPEN",
    "DEFAULT_SLOW_CALL_DURATION_S",
    "DEFAULT_WAIT_IN_OPEN_S",
    "DEFAULT_WINDOW_SIZE",
    "CircuitConfig",
    "RetryPolicy",
    "WindowType",
]

DEFAULT_FAILURE_RATE_THRESHOLD = 0.5
DEFAULT_SLOW_CALL_RATE_THRESHOLD = 1.0
DEFAULT_SLOW_CALL_DURATION_S = 60.0
DEFAULT_WINDOW_SIZE = 100
DEFAULT_MINIMUM_NUMBER_OF_CALLS = 100
DEFAULT_PERMITTED_CALLS_IN_HALF_OPEN = 10
DEFAULT_WAIT_IN_OPEN_S = 60.0


def _check(ok: bool, name: str, value: Any, reason: str) -> None:
    if not ok:
        raise ConfigError(name, value, reason)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_ratio(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """A rate in (0, 1], or [0, 1] with ``allow_zero``."""
    lo = "[0" if allow_zero else "(0"
    _check(
        _is_real(value) and (value >= 0 if allow_zero else value > 0) and value <= 1,
        name, value, f"must be in {lo}, 1]",
    )


def check_positive(name: str, value: Any) -> None:
    _check(_is_real(value) and value > 0, name, value, "must be a finite number > 0")


def check_non_negative(name: str, value: Any) -> None:
    _check(_is_real(value) and value >= 0, name, value, "must be a finite number >= 0")


def check_count(name: str, value: Any, minimum: int = 1) -> None:
    _check(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        name, value, f"must be an integer >= {minimum}",
    )


def as_enum(enum_type: type[enum.Enum], value: Any, name: str) -> Any:
    """``value`` as a member of ``enum_type`` (given as the member or its value)."""
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)
    except ValueError:
        raise ConfigError(name, value, f"must be one of {[e.value for e in enum_type]}") from None


def check_callable(name: str, value: Any) -> None:
    _check(callable(value), name, value, "must be callable")


class WindowType(enum.Enum):
    """How a circuit's sliding window is measured."""

    COUNT = "count"  # the last N calls
    TIME = "time"  # the calls of the last N seconds


def _every_exception(exc: BaseException) -> bool:
    return True


def _no_exception(exc: BaseException) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class CircuitConfig:
    """How one circuit decides; the semantics of resilience4j's ``CircuitBreakerConfig``.

    Rates are ratios in (0, 1]; the circuit opens when, over a window holding at least
    ``minimum_number_of_calls`` calls, the failure rate or the slow-call rate reaches its
    threshold. An exception counts as a failure when ``record_exception`` says so and
    ``ignore_exception`` does not (ignored calls are not counted at all; ignoring wins); a
    result counts as a failure when ``record_result`` returns True, which is how a response
    that fails its clinical validity check counts against the circuit like an error.

    ``wait_in_open_s`` grows by ``wait_multiplier`` on each consecutive re-open without an
    intervening CLOSED, capped at ``max_wait_in_open_s``. ``max_wait_in_half_open_s`` (0 = no
    limit) sends a HALF_OPEN circuit whose trial calls never finish back to OPEN.
    """

    failure_rate_threshold: float = DEFAULT_FAILURE_RATE_THRESHOLD
    slow_call_rate_threshold: float = DEFAULT_SLOW_CALL_RATE_THRESHOLD
    slow_call_duration_s: float = DEFAULT_SLOW_CALL_DURATION_S
    window_type: WindowType = WindowType.COUNT
    window_size: int = DEFAULT_WINDOW_SIZE
    minimum_number_of_calls: int = DEFAULT_MINIMUM_NUMBER_OF_CALLS
    permitted_calls_in_half_open: int = DEFAULT_PERMITTED_CALLS_IN_HALF_OPEN
    wait_in_open_s: float = DEFAULT_WAIT_IN_OPEN_S
    wait_multiplier: float = 1.0
    max_wait_in_open_s: float | None = None
    max_wait_in_half_open_s: float = 0.0
    record_exception: Callable[[BaseException], bool] = _every_exception
    ignore_exception: Callable[[BaseException], bool] = _no_exception
    record_result: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        check_ratio("failure_rate_threshold", self.failure_rate_threshold)
        check_ratio("slow_call_rate_threshold", self.slow_call_rate_threshold)
        check_positive("slow_call_duration_s", self.slow_call_duration_s)
        _check(isinstance(self.window_type, WindowType), "window_type", self.window_type,
               "must be WindowType.COUNT or WindowType.TIME")
        check_count("window_size", self.window_size)
        check_count("minimum_number_of_calls", self.minimum_number_of_calls)
        check_count("permitted_calls_in_half_open", self.permitted_calls_in_half_open)
        check_positive("wait_in_open_s", self.wait_in_open_s)
        _check(_is_real(self.wait_multiplier) and self.wait_multiplier >= 1, "wait_multiplier",
               self.wait_multiplier, "must be a finite number >= 1")
        if self.max_wait_in_open_s is not None:
            _check(_is_real(self.max_wait_in_open_s)
                   and self.max_wait_in_open_s >= self.wait_in_open_s,
                   "max_wait_in_open_s", self.max_wait_in_open_s,
                   f"must be >= wait_in_open_s ({self.wait_in_open_s})")
        check_non_negative("max_wait_in_half_open_s", self.max_wait_in_half_open_s)
        check_callable("record_exception", self.record_exception)
        check_callable("ignore_exception", self.ignore_exception)
        if self.record_result is not None:
            check_callable("record_result", self.record_result)

    @property
    def effective_minimum_calls(self) -> int:
        """A count window can never hold more than its size (resilience4j does the same)."""
        if self.window_type is WindowType.COUNT:
            return min(self.minimum_number_of_calls, self.window_size)
        return self.minimum_number_of_calls

    def wait_for_open_number(self, consecutive_opens: int) -> float:
        """Seconds to stay OPEN on the ``consecutive_opens``-th open in a row (1-based)."""
        wait = self.wait_in_open_s * self.wait_multiplier ** max(0, consecutive_opens - 1)
        if self.max_wait_in_open_s is not None:
            wait = min(wait, self.max_wait_in_open_s)
        return wait


def exceptions_of(*types: type[BaseException]) -> Callable[[BaseException], bool]:
    """A predicate matching instances of ``types``: ``record_exception=exceptions_of(OSError)``."""
    for t in types:
        _check(isinstance(t, type) and issubclass(t, BaseException), "exception type", t,
               "must be an exception class")
    return lambda exc: isinstance(exc, types)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how often to try again (tenacity's stop/wait/retry, as one validated record).

    The n-th backoff (1-based) is ``min(max_delay_s, base_delay_s * exponential_base**(n-1))``;
    with ``full_jitter`` it is drawn uniformly from [0, that] (AWS's "full jitter"), which
    spreads a fleet's retries instead of synchronising them. ``retry_on_exception`` and
    ``retry_on_result`` say which outcomes are worth another attempt. ``deadline_s`` bounds the
    whole retry loop from its first attempt; a caller's own deadline can be tighter.
    """

    max_attempts: int = 3
    base_delay_s: float = 0.1
    exponential_base: float = 2.0
    max_delay_s: float = 10.0
    full_jitter: bool = True
    deadline_s: float | None = None
    retry_on_exception: Callable[[BaseException], bool] = _every_exception
    retry_on_result: Callable[[Any], bool] | None = None
    name: str = field(default="retry", compare=False)

    def __post_init__(self) -> None:
        check_count("max_attempts", self.max_attempts)
        check_non_negative("base_delay_s", self.base_delay_s)
        _check(_is_real(self.exponential_base) and self.exponential_base >= 1,
               "exponential_base", self.exponential_base, "must be a finite number >= 1")
        check_non_negative("max_delay_s", self.max_delay_s)
        _check(isinstance(self.full_jitter, bool), "full_jitter", self.full_jitter,
               "must be True or False")
        if self.deadline_s is not None:
            check_positive("deadline_s", self.deadline_s)
        check_callable("retry_on_exception", self.retry_on_exception)
        if self.retry_on_result is not None:
            check_callable("retry_on_result", self.retry_on_result)

    def backoff_cap_s(self, attempt: int) -> float:
        """The largest backoff after ``attempt`` (1-based) failed attempts."""
        try:
            grown = self.base_delay_s * self.exponential_base ** (attempt - 1)
        except OverflowError:  # 2.0 ** 1100 does not fit a float; the cap applies long before
            return self.max_delay_s
        return min(self.max_delay_s, grown)


class TierMethod(enum.Enum):
    """The four fallback tier methods of the seed (2.1)."""

    ALTERNATIVE_PROVIDER = "alternative_provider"
    CACHED_DATA = "cached_data"
    DEGRADED_MODE = "degraded_mode"
    STATIC_FALLBACK = "static_fallback"


@dataclass(frozen=True, slots=True)
class FallbackTier:
    """One tier of a fallback strategy.

    ``alternative_provider`` needs ``provider``; ``cached_data`` needs ``max_staleness_s``;
    ``degraded_mode`` needs a registered ``handler`` or a fixed ``response``;
    ``static_fallback`` needs ``response``. ``stale_data_warning`` attaches the warning text
    to every answer from this tier (cached answers always carry their age).
    """

    priority: int
    method: TierMethod
    provider: str | None = None
    max_staleness_s: float | None = None
    handler: str | None = None
    response: Any = None
    stale_data_warning: bool = False
    warning: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.method, str):
            try:
                object.__setattr__(self, "method", TierMethod(self.method))
            except ValueError:
                raise ConfigError("method", self.method,
                                  f"must be one of {[m.value for m in TierMethod]}") from None
        _check(isinstance(self.method, TierMethod), "method", self.method,
               f"must be one of {[m.value for m in TierMethod]}")
        check_count("priority", self.priority)
        m = self.method
        if m is TierMethod.ALTERNATIVE_PROVIDER:
            _check(isinstance(self.provider, str) and bool(self.provider), "provider",
                   self.provider, "must name the provider for an alternative_provider tier")
        if m is TierMethod.CACHED_DATA:
            _check(self.max_staleness_s is not None, "max_staleness_s", self.max_staleness_s,
                   "is required for a cached_data tier")
            check_positive("max_staleness_s", self.max_staleness_s)
        elif self.max_staleness_s is not None:
            raise ConfigError("max_staleness_s", self.max_staleness_s,
                              f"applies only to cached_data tiers, not {m.value}")
        if m is TierMethod.DEGRADED_MODE:
            _check(self.handler is not None or self.response is not None, "handler",
                   self.handler, "or response is required for a degraded_mode tier")
        if m is TierMethod.STATIC_FALLBACK:
            _check(self.response is not None, "response", self.response,
                   "is required for a static_fallback tier")

    @property
    def label(self) -> str:
        """How results and errors name this tier: ``alternative_provider:deepseek``."""
        extra = self.provider or self.handler
        return f"{self.method.value}:{extra}" if extra else self.method.value
