"""Events the core returns when something worth telling happens.

The core never publishes: its methods return these frozen records and the shell (an actor,
the guard's sink, a test) decides where they go. They carry no patient or clinician
identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["CircuitTransitioned", "ThresholdExceeded"]


@dataclass(frozen=True, slots=True)
class CircuitTransitioned:
    """A circuit moved from one state to another (or was reset in place)."""

    circuit: str
    from_state: Any  # CircuitState; typed loosely to keep this module free of circuit.py
    to_state: Any
    reason: str
    at: datetime
    at_s: float
    calls: int = 0
    failure_rate: float | None = None
    slow_call_rate: float | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class ThresholdExceeded:
    """A METRICS_ONLY circuit crossed a threshold it would have opened on."""

    circuit: str
    at: datetime
    at_s: float
    calls: int
    failure_rate: float
    slow_call_rate: float
