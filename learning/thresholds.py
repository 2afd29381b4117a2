"""Per-service alert thresholds chosen on labelled history (seed 7.2).

:class:`AdaptiveThresholdManager` takes, per service, samples of a signal (an error rate per
bucket, an anomaly score...) each labelled with whether the service was really in trouble,
and chooses the threshold that meets the false-positive target (at most 5 % of healthy
samples over it) and the false-negative target (at most 1 % of troubled samples under it).
When both cannot hold, it keeps the false-positive target and reports the false-negative
rate it reaches: an alarm that cries wolf is the one people stop reading.

A new threshold is applied only when it moves by more than ``min_change`` (20 %) from the one
in force; every applied change is a :class:`ThresholdChange` (for the audit trail) and can be
reverted to the previous value.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from healing.config import _check, check_positive

__all__ = ["AdaptiveThresholdManager", "Choice", "ThresholdChange"]


@dataclass(frozen=True, slots=True)
class Choice:
    service: str
    threshold: float
    false_positive_rate: float
    false_negative_rate: float
    meets_targets: bool
    healthy: int  # samples it was judged on
    troubled: int


@dataclass(frozen=True, slots=True)
class ThresholdChange:
    service: str
    old: float | None
    new: float
    reason: str
    choice: Choice | None  # None for a revert


@dataclass
class AdaptiveThresholdManager:
    max_fpr: float = 0.05
    max_fnr: float = 0.01
    min_change: float = 0.20
    current: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)  # earlier values, newest last

    def __post_init__(self) -> None:
        for name in ("max_fpr", "max_fnr"):
            v = getattr(self, name)
            _check(isinstance(v, float | int) and 0 <= v < 1, name, v, "must be in [0, 1)")
        check_positive("min_change", self.min_change)

    def choose(self, service: str, samples: Iterable[tuple[float, bool]]) -> Choice:
        """The threshold for ``service`` from ``(value, troubled)`` samples: alarm when the
        value is at or above it."""
        pairs = list(samples)
        healthy = sorted(v for v, bad in pairs if not bad)
        troubled = sorted(v for v, bad in pairs if bad)
        _check(bool(healthy), f"{service}.samples", len(healthy),
               "need healthy samples to bound false positives")
        # the lowest threshold with at most max_fpr of healthy samples at or above it
        allowed = int(self.max_fpr * len(healthy))
        # strictly above the healthy values it must not flag
        threshold = math.nextafter(healthy[len(healthy) - allowed - 1], math.inf)
        fpr = (len(healthy) - bisect.bisect_left(healthy, threshold)) / len(healthy)
        fnr = bisect.bisect_left(troubled, threshold) / len(troubled) if troubled else 0.0
        return Choice(service, threshold, fpr, fnr, fpr <= self.max_fpr and fnr <= self.max_fnr,
                      len(healthy), len(troubled))

    def apply(self, choice: Choice) -> ThresholdChange | None:
        """Adopt ``choice`` if it moves the threshold by more than ``min_change``."""
        old = self.current.get(choice.service)
        if old is not None and abs(choice.threshold - old) <= self.min_change * abs(old):
            return None
        self.history.setdefault(choice.service, [])
        if old is not None:
            self.history[choice.service].append(old)
        self.current[choice.service] = choice.threshold
        moved = "set" if old is None else f"moved {100 * (choice.threshold - old) / old:+.0f} %"
        return ThresholdChange(choice.service, old, choice.threshold,
                               f"{moved}: false positives {choice.false_positive_rate:.1%}, "
                               f"false negatives {choice.false_negative_rate:.1%} on "
                               f"{choice.healthy + choice.troubled} samples", choice)

    def revert(self, service: str) -> ThresholdChange:
        """Go back to the threshold before the current one."""
        earlier = self.history.get(service)
        _check(bool(earlier), f"{service}", None, "has no earlier threshold to go back to")
        old = self.current[service]
        new = earlier.pop()  # type: ignore[union-attr]
        self.current[service] = new
        return ThresholdChange(service, old, new, "reverted", None)
