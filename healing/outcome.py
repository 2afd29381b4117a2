"""Outcomes: what one guarded call came to, and where that record goes.

The guard hands every outcome to an :class:`OutcomeSink`. The record carries the service,
latency, success, error kind, the tier that answered and the clinical context's kind and
criticality — never a patient or clinician identifier. :class:`InMemorySink` keeps them in
the process; the runtime adds sinks that batch them to Redis and to the circuit actors.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = ["NOT_CALLED", "InMemorySink", "Outcome", "OutcomeRecord", "OutcomeSink"]

# Error kinds of outcomes whose primary was never called: an open circuit refused it, a
# route sent the request straight to a fallback tier, admission shed it, or its deadline had
# passed. They say nothing of whether the primary answers.
NOT_CALLED = frozenset({"rejected", "routed", "shed", "deadline"})


class Outcome(NamedTuple):
    """A call's result or error, and how long it took."""

    value: Any
    error: BaseException | None
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


class OutcomeRecord(NamedTuple):
    """One guarded call, as the sinks see it. A NamedTuple: built on every call, so cheap."""

    service: str
    provider: str | None
    success: bool  # the caller got an answer (from the primary or an allowed fallback)
    latency_s: float
    error_kind: str | None  # the primary's failure: exception class, "integrity", "rejected"
    tier: str  # "primary", or the label of the fallback tier that answered, or "none"
    staleness_s: float | None
    operation_type: Any  # OperationType; enums, not strings: .value costs on the hot path
    criticality: Any  # Criticality
    at: float  # UTC epoch seconds from the guard's clock


@runtime_checkable
class OutcomeSink(Protocol):
    """Receives every outcome. Must not block or raise: it sits on the request path.

    A sink may also have ``retried(service, at)``: the guard calls it for each failed attempt
    of a primary that a retry follows, which the request's outcome does not show when the
    retry answers (the live recorder counts them for the predictive monitor)."""

    def record(self, outcome: OutcomeRecord) -> None: ...


class InMemorySink:
    """Keeps the last ``maxlen`` outcomes and exact counters, thread-safe."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self.outcomes: deque[OutcomeRecord] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()

    def record(self, outcome: OutcomeRecord) -> None:
        self.outcomes.append(outcome)  # deque.append is atomic
        key = (outcome.service, "ok" if outcome.success else "failed")
        with self._lock:
            self.counts[key] += 1
            if outcome.success and outcome.tier != "primary":
                self.counts[(outcome.service, outcome.tier)] += 1

    def retried(self, service: str, at: float) -> None:
        """A failed attempt of ``service``'s primary that a retry followed."""
        with self._lock:
            self.counts[(service, "retried")] += 1

    def for_service(self, service: str) -> list[OutcomeRecord]:
        return [o for o in list(self.outcomes) if o.service == service]
