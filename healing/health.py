"""Health with hysteresis: healthy, degraded, unhealthy, and the events between them.

A :class:`HealthTracker` turns a stream of check results into a state that does not flap:
``fall`` failures in a row make a service unhealthy, one failure (or a slow success) makes a
healthy one degraded, and ``rise`` good results in a row bring it back to healthy. Going
down to unhealthy raises :class:`HealthCheckFailed` (the ``health_check_failed`` trigger of
the recovery orchestrator); coming back up records :class:`HealthRecovered`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from .config import check_count, check_positive

__all__ = ["CheckResult", "HealthCheckFailed", "HealthPolicy", "HealthRecovered",
           "HealthState", "HealthTracker"]


class HealthState(enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class CheckResult(enum.Enum):
    OK = "ok"
    SLOW = "slow"  # answered, but slower than the policy's degraded latency
    FAILED = "failed"  # error, refusal or timeout


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """How often to check, how long to wait, and how much evidence moves the state."""

    interval_s: float = 10.0
    timeout_s: float = 2.0
    degraded_latency_s: float = 1.0
    fall: int = 3
    rise: int = 2

    def __post_init__(self) -> None:
        check_positive("interval_s", self.interval_s)
        check_positive("timeout_s", self.timeout_s)
        check_positive("degraded_latency_s", self.degraded_latency_s)
        check_count("fall", self.fall)
        check_count("rise", self.rise)


@dataclass(frozen=True, slots=True)
class HealthCheckFailed:
    """Trigger: a check went unhealthy."""

    check: str
    at: datetime
    consecutive_failures: int
    last_error: str


@dataclass(frozen=True, slots=True)
class HealthRecovered:
    check: str
    at: datetime
    down_for_s: float


@dataclass
class HealthTracker:
    name: str
    policy: HealthPolicy = field(default_factory=HealthPolicy)

    def __post_init__(self) -> None:
        self.state = HealthState.HEALTHY
        self.failures = 0
        self.goods = 0
        self.last_error = ""
        self.last_latency_s: float | None = None
        self.unhealthy_since: float | None = None

    def observe(self, result: CheckResult, latency_s: float | None, now: float,
                at: datetime, error: str = "") -> list[HealthCheckFailed | HealthRecovered]:
        """Take one check result at monotonic ``now`` (``at`` for records)."""
        self.last_latency_s = latency_s
        events: list[HealthCheckFailed | HealthRecovered] = []
        if result is CheckResult.FAILED:
            self.failures += 1
            self.goods = 0
            self.last_error = error
            if self.failures >= self.policy.fall:
                if self.state is not HealthState.UNHEALTHY:
                    self.state = HealthState.UNHEALTHY
                    self.unhealthy_since = now
                    events.append(HealthCheckFailed(self.name, at, self.failures, error))
            elif self.state is HealthState.HEALTHY:
                self.state = HealthState.DEGRADED
            return events
        self.failures = 0
        if result is CheckResult.SLOW:
            self.goods = 0
            if self.state is HealthState.HEALTHY:
                self.state = HealthState.DEGRADED
            return events
        self.goods += 1
        if self.goods >= self.policy.rise and self.state is not HealthState.HEALTHY:
            if self.state is HealthState.UNHEALTHY and self.unhealthy_since is not None:
                events.append(HealthRecovered(self.name, at, now - self.unhealthy_since))
            self.state = HealthState.HEALTHY
            self.unhealthy_since = None
        return events
