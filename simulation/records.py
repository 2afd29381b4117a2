"""What one simulated run records: per-second counts per service, its detections, its audit
records, and the result handed to the metrics (:mod:`simulation.metrics`)."""

from __future__ import annotations

import hashlib
import random
from array import array
from dataclasses import dataclass, field
from typing import Any

from healing.audit import AuditRecord
from healing.outcome import NOT_CALLED, OutcomeRecord

from .scenario import Scenario
from .world import FaultInstance

__all__ = ["SAMPLE_RATE", "Detection", "OutcomeCounter", "RunAudit", "RunResult",
           "ServiceLog"]

# the share of successes an event log keeps (every error is kept), as the live streams do
SAMPLE_RATE = 0.1


@dataclass(frozen=True, slots=True)
class Detection:
    at: float
    service: str
    signal: str  # circuit_open | health_check_failed | error_threshold
    detail: str


@dataclass
class ServiceLog:
    """Per-second counts for one service, and its patients' experience."""

    total: array
    served: array
    calls: array  # primary calls made (the error threshold's denominator)
    errors: array  # primary calls that failed or answered wrongly
    impact: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("none", "delay", "degraded", "unavailable"), 0))


@dataclass
class RunResult:
    scenario: Scenario
    seed: int
    healing: bool
    logs: dict[str, ServiceLog]
    incidents: list[FaultInstance]
    detections: list[Detection]
    steps: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    integrity_violations: int
    audit_expected: int
    audit_written: int
    requests: int
    outcomes: list[tuple[Any, ...]]  # sampled, for the event log (when asked for)
    audit: list[AuditRecord]  # kept only when the event log is asked for


class OutcomeCounter:
    """The guard's outcome sink: counts primary calls and errors per second."""

    def __init__(self, logs: dict[str, ServiceLog], rng: random.Random | None,
                 sample_rate: float) -> None:
        self.logs = logs
        self.sec = 0
        self.last_kind: str | None = None
        self.failures = 0  # outcomes that must leave an audit record
        self.rng, self.sample_rate = rng, sample_rate
        self.sampled: list[tuple[Any, ...]] = []

    def record(self, o: OutcomeRecord) -> None:
        kind = o.error_kind
        self.last_kind = kind
        if kind is None:
            self.logs[o.service].calls[self.sec] += 1
        else:
            self.failures += 1
            if kind not in NOT_CALLED:
                log = self.logs[o.service]
                log.calls[self.sec] += 1
                log.errors[self.sec] += 1
        if self.rng is not None and (kind is not None or self.rng.random() < self.sample_rate):
            # the live metric stream's event: [at, latency_s, answered, error_kind, tier,
            # provider]; answered by the primary when error_kind is None
            self.sampled.append((o.at, o.service, o.latency_s, o.success, kind, o.tier,
                                 o.provider))


class RunAudit:
    """The run's audit sink: counts every record; keeps them for the event log if asked."""

    def __init__(self, keep: bool) -> None:
        self.written = 0
        self.keep = keep
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> None:
        self.written += 1
        if self.keep:
            self.records.append(record)

    async def aappend(self, record: AuditRecord) -> None:
        self.append(record)

    @staticmethod
    def pseudonymize(identifier: str) -> str:
        return hashlib.sha256(b"simulation:" + identifier.encode()).hexdigest()[:16]
