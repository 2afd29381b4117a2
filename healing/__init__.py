"""selfheal's functional core: plain Python, no Ray, no Redis, no SQL.

Everything time-based reads an injected :class:`Clock`, so the same objects run at wall-clock
speed in a service and at simulated speed in the simulator.
"""

from .cache import FallbackCache
from .circuit import (
    IGNORED,
    LEGAL_TRANSITIONS,
    CircuitBreaker,
    CircuitMetrics,
    CircuitState,
    Permit,
    Rejection,
)
from .clock import Clock, ManualClock, SystemClock
from .config import CircuitConfig, FallbackTier, RetryPolicy, TierMethod, WindowType, exceptions_of
from .errors import (
    CallRejected,
    CallShed,
    CallTimedOut,
    CircuitOpenError,
    ClinicalSafetyError,
    ConfigError,
    DeadlineExceeded,
    FallbackExhausted,
    IllegalTransition,
    IntegrityCheckFailed,
    RetryExhausted,
    RoutedAway,
    SelfHealError,
    TierFailure,
    UnsafeStrategyError,
)
from .events import CircuitTransitioned, ThresholdExceeded
from .fallback import FallbackResult, FallbackStrategy, FallbackStrategyRegistry
from .guard import Guard, default_guard, guard
from .integrity import (
    AllOf,
    AnyOf,
    ConfidenceFloor,
    IntegrityCheck,
    Predicate,
    RequiredFields,
    ValueRange,
)
from .limits import CallGate, CallPolicy, HedgeConfig
from .outcome import InMemorySink, Outcome, OutcomeRecord, OutcomeSink
from .registry import CircuitBreakerRegistry, ServiceId
from .retry import Retrier
from .routing import Route, RouteTable
from .safety import (
    CLINICAL_GUIDANCE,
    CRITICAL_SERVICES,
    Acuity,
    ClinicalContext,
    ClinicalSafetyValidator,
    Criticality,
    OperationType,
    RecoveryAction,
    ValidationResult,
)
from .strategies import default_strategies

__all__ = [
    "CLINICAL_GUIDANCE", "CRITICAL_SERVICES", "IGNORED", "LEGAL_TRANSITIONS",
    "Acuity", "AllOf", "AnyOf", "CallGate", "CallPolicy", "CallRejected", "CallShed",
    "CallTimedOut", "CircuitBreaker", "CircuitBreakerRegistry",
    "CircuitConfig", "CircuitMetrics", "CircuitOpenError", "CircuitState",
    "CircuitTransitioned", "ClinicalContext", "ClinicalSafetyError",
    "ClinicalSafetyValidator", "Clock", "ConfidenceFloor", "ConfigError", "Criticality",
    "DeadlineExceeded", "FallbackCache", "FallbackExhausted", "FallbackResult",
    "FallbackStrategy", "FallbackStrategyRegistry", "FallbackTier", "Guard", "HedgeConfig",
    "IllegalTransition", "InMemorySink", "IntegrityCheck", "IntegrityCheckFailed",
    "ManualClock", "OperationType", "Outcome", "OutcomeRecord", "OutcomeSink", "Permit",
    "Predicate", "RecoveryAction", "Rejection", "RequiredFields", "Retrier", "RetryExhausted",
    "RetryPolicy", "Route", "RouteTable", "RoutedAway", "SelfHealError", "ServiceId",
    "SystemClock", "ThresholdExceeded",
    "TierFailure", "TierMethod", "UnsafeStrategyError", "ValidationResult", "ValueRange",
    "WindowType", "default_guard", "default_strategies", "exceptions_of", "guard",
]
