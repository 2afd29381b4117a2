"""Per-service alert thresholds chosen on labelled history (seed 7.2).

:class:`AdaptiveThresholdManager` takes, per service, samples of a signal (an error rate per
bucket, an anomaly score...) each labelled with whether the service was really in trouble,
and chooses the threshold that meets the false-positive target (at most 5 % of healthy
samples over it and, on ordered history, at most 5 % of the alarms false: a run of healthy
buckets over the threshold is one false alarm) and the false-negative target (at most 1 %
missed). Misses are counted by
**episode** when the troubled stretches are given (an incident is caught if any of its
buckets is over the threshold: the first minutes of a slow fault are meant to be under it),
by troubled sample otherwise. When both cannot hold, it keeps the false-positive target and
reports the trade-off: the false-negative rate it reaches, and the threshold (with its
false-positive rate) that would hold the false-negative target instead. An alarm that cries
wolf is the one people stop reading.

A new threshold is applied only when it moves by more than ``min_change`` (20 %) from the one
in force; every applied change is a :class:`ThresholdChange` (for the audit trail) and can be
reverted to the previous value.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    episodes: int = 0  # troubled stretches, when misses were counted by episode
    # when both targets cannot hold: the threshold that would hold the false-negative target,
    # and the false-positive rate it would cost
    fnr_threshold: float | None = None
    fnr_threshold_fpr: float | None = None
    # on ordered history: alarms (stretches over the threshold) that came while healthy, and
    # the share of all alarms they are
    false_alarms: int | None = None
    false_alarm_share: float | None = None

    def describe(self) -> str:
        unit = f"{self.episodes} episodes" if self.episodes else \
            f"{self.troubled} troubled buckets"
        misses = f"false negatives {self.false_negative_rate:.1%} of {unit}" \
            if self.episodes or self.troubled else "no trouble in the history to miss"
        alarms = "" if self.false_alarms is None else \
            f" ({self.false_alarms} false alarms, {self.false_alarm_share:.0%} of alarms)"
        out = (f"{self.service}: threshold {self.threshold:.4g}: false positives "
               f"{self.false_positive_rate:.1%} of {self.healthy} healthy buckets{alarms}, "
               f"{misses}")
        if self.meets_targets:
            return out + ": both targets hold"
        if self.fnr_threshold is not None:
            out += (f"; both cannot hold: misses under 1 % need {self.fnr_threshold:.4g}, "
                    f"with {self.fnr_threshold_fpr:.1%} false positives")
        return out


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

    def choose(self, service: str, samples: Iterable[tuple[float, bool]],
               episodes: Iterable[float] | None = None,
               healthy_runs: Sequence[Sequence[float]] | None = None) -> Choice:
        """The threshold for ``service`` from ``(value, troubled)`` samples: alarm when the
        value is at or above it. With ``episodes`` (each troubled stretch's highest value),
        misses are counted by episode. With ``healthy_runs`` (the healthy values in time
        order, one list per healthy stretch), false positives are bounded by alarm too: a
        run of healthy values over the threshold is one false alarm, and false alarms may be
        at most ``max_fpr`` of all alarms. Without it, a service with no errors in most
        buckets gets a threshold just above zero: one stray error would start a recovery."""
        pairs = list(samples)
        healthy = sorted(v for v, bad in pairs if not bad)
        troubled = sorted(v for v, bad in pairs if bad)
        peaks = sorted(episodes) if episodes is not None else None
        _check(bool(healthy), f"{service}.samples", len(healthy),
               "need healthy samples to bound false positives")
        missed = peaks if peaks is not None else troubled

        def fpr_at(t: float) -> float:
            return (len(healthy) - bisect.bisect_left(healthy, t)) / len(healthy)

        def fnr_at(t: float) -> float:
            return bisect.bisect_left(missed, t) / len(missed) if missed else 0.0

        # the lowest threshold with at most max_fpr of healthy samples at or above it,
        # strictly above the healthy values it must not flag
        allowed = int(self.max_fpr * len(healthy))
        threshold = math.nextafter(healthy[len(healthy) - allowed - 1], math.inf)
        false_alarms = share = None
        if healthy_runs is not None:
            threshold, false_alarms, share = self._fewer_false_alarms(
                threshold, healthy, healthy_runs, peaks if peaks is not None else troubled)
        fpr, fnr = fpr_at(threshold), fnr_at(threshold)
        meets = fpr <= self.max_fpr and fnr <= self.max_fnr + 1e-12 and (
            share is None or share <= self.max_fpr)
        alt = alt_fpr = None
        if not meets and missed:
            # the highest threshold that still misses at most max_fnr: at most that many
            # misses may sit below it
            may_miss = int(self.max_fnr * len(missed))
            alt = missed[may_miss]
            alt_fpr = fpr_at(alt)
        return Choice(service, threshold, fpr, fnr, meets, len(healthy), len(troubled),
                      len(peaks) if peaks is not None else 0, alt, alt_fpr, false_alarms,
                      share)

    def _fewer_false_alarms(self, lowest: float, healthy: list[float],
                            runs: Sequence[Sequence[float]], caught: list[float]
                            ) -> tuple[float, int, float]:
        """The lowest threshold from ``lowest`` up at which false alarms are at most
        ``max_fpr`` of all alarms (above every healthy value, there are none)."""
        # the runs end to end, a NaN between two (never over a threshold: they stay apart)
        values = np.concatenate([np.append(np.asarray(r, float), np.nan) for r in runs]) \
            if runs else np.array([np.nan])
        caught_sorted = np.sort(np.asarray(caught, float))
        for t in [lowest, *(math.nextafter(v, math.inf)
                            for v in sorted({h for h in healthy if h >= lowest}))]:
            over = values >= t
            false = int(over[0]) + int(np.count_nonzero(over[1:] & ~over[:-1]))
            true = len(caught_sorted) - int(np.searchsorted(caught_sorted, t, "left"))
            if false <= self.max_fpr * (false + true):
                return t, false, false / (false + true) if false + true else 0.0
        raise AssertionError("unreachable: above every healthy value there is no false alarm")

    def choose_on_history(self, service: str, segments: Iterable[Iterable[Any]],
                          min_calls: float = 20.0) -> Choice | None:
        """:meth:`choose` on labelled buckets (``calls``, ``errors``, ``troubled``: one
        list per stretch of history), their error rates as the signal, misses and false
        alarms counted by episode; None without a healthy bucket of ``min_calls``."""
        samples: list[tuple[float, bool]] = []
        peaks: list[float] = []
        runs: list[list[float]] = [[]]  # healthy stretches, in time order
        for seg in segments:
            peak = None
            for b in seg:
                rate = b.errors / b.calls if b.calls >= min_calls else None
                if b.troubled:
                    if rate is not None:
                        peak = rate if peak is None else max(peak, rate)
                        samples.append((rate, True))
                    if runs[-1]:
                        runs.append([])
                    continue
                if peak is not None:
                    peaks.append(peak)
                    peak = None
                if rate is not None:
                    samples.append((rate, False))
                    runs[-1].append(rate)
            if peak is not None:
                peaks.append(peak)
            if runs[-1]:
                runs.append([])
        if not any(not bad for _, bad in samples):
            return None
        return self.choose(service, samples, peaks, [r for r in runs if r])

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
