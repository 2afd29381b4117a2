"""Recurring failures (seed 7.1) and what to do before they recur (seed 7.3).

:class:`PatternRecognizer` turns failure history (detections, audit records: anything with a
service, a time and a kind) into :class:`Pattern`\\ s: a service failing at about the same
time of day on most days, or the same time on the same weekday in most weeks. Each pattern
carries its frequency, occurrences, typical cause, last occurrence, the action recommended
before it and a priority with the impact it is estimated to avoid.

:class:`ProactivePreventionEngine` says, at any moment, which patterns are due within the
lead time, once per expected occurrence: the caller turns those into preventive workflows
through the orchestrator, where the clinical safety validator clears them like any other.

Pure: times are UTC epoch seconds given by the caller.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from healing.config import check_count, check_positive

__all__ = ["FailureEvent", "Pattern", "PatternRecognizer", "PreventiveAction",
           "ProactivePreventionEngine"]

DAY = 86400.0
WEEK = 7 * DAY
# What to do ahead of a recurring failure: recycle the service's processes and connection
# pools (what stops a 14:00 deadlock or a daily leak), unless what is seen first is a
# provider's circuit opening, when moving traffic off it ahead of time is the cure.
RECOMMENDED = {"circuit_open": "fallback"}


@dataclass(frozen=True, slots=True)
class FailureEvent:
    service: str
    at: float  # UTC epoch seconds
    kind: str  # what was seen: a detection signal, an error kind...


@dataclass(frozen=True, slots=True)
class Pattern:
    service: str
    frequency: str  # "daily" | "weekly"
    seconds_of_period: float  # when in the day (or week) it starts, typically
    occurrences: int  # days (or weeks) on which it happened
    periods_observed: int  # days (or weeks) of history looked at
    typical_cause: str
    recommended_action: str
    last_occurrence: float
    priority: str  # high | medium | low
    estimated_impact: str

    @property
    def period_s(self) -> float:
        return DAY if self.frequency == "daily" else WEEK

    def next_after(self, t: float) -> float:
        """The next expected start strictly after ``t``."""
        base = t - (t % self.period_s) + self.seconds_of_period
        return base if base > t else base + self.period_s

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Pattern:
        """A pattern from its logged row (``dataclasses.asdict`` plus extra keys, such as
        the ``describe`` text, which are ignored)."""
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.seconds_of_period % DAY, UTC).strftime("%H:%M")
        if self.frequency == "weekly":
            # epoch day 0 was a Thursday
            day = ("Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed")[
                int(self.seconds_of_period // DAY)]
            when = f"{day} {when}"
        return (f"{self.service}: {self.typical_cause} {self.frequency} at {when} UTC "
                f"({self.occurrences}/{self.periods_observed}); before it: "
                f"{self.recommended_action}")


@dataclass
class PatternRecognizer:
    """Finds daily and weekly recurrences.

    Args:
        slot_s: events within one slot of each other count as the same time of day.
        min_occurrences: periods (days or weeks) a pattern must have happened on.
        min_share: share of the observed periods it must have happened on.
    """

    slot_s: float = 900.0
    min_occurrences: int = 3
    min_share: float = 0.5

    def __post_init__(self) -> None:
        check_positive("slot_s", self.slot_s)
        check_count("min_occurrences", self.min_occurrences)
        check_positive("min_share", self.min_share)

    def fit(self, events: Iterable[FailureEvent]) -> list[Pattern]:
        by_service: dict[str, list[FailureEvent]] = defaultdict(list)
        for e in events:
            by_service[e.service].append(e)
        out = []
        for service, evs in sorted(by_service.items()):
            evs.sort(key=lambda e: e.at)
            for frequency, period in (("daily", DAY), ("weekly", WEEK)):
                found = self._recurring(service, evs, frequency, period)
                if found is not None:
                    out.append(found)
                    break  # a daily pattern is also weekly: report the finer one
        order = {"high": 0, "medium": 1, "low": 2}
        return sorted(out, key=lambda p: (order[p.priority], p.service))

    def _recurring(self, service: str, evs: list[FailureEvent], frequency: str,
                   period: float) -> Pattern | None:
        first, last = evs[0].at, evs[-1].at
        observed = int((last - first) // period) + 1
        if observed < self.min_occurrences:
            return None
        # the first event of each period, in each slot of the period (and its neighbour)
        slots: dict[int, dict[int, float]] = defaultdict(dict)
        for e in evs:
            p, into = int(e.at // period), e.at % period
            slot = int(into // self.slot_s)
            slots[slot].setdefault(p, into)
        best_slot, best = None, 0
        for slot, first_in_period in slots.items():
            periods = set(first_in_period) | set(slots.get(slot + 1, {})) | set(
                slots.get(slot - 1, {}))
            if len(periods) > best:
                best_slot, best = slot, len(periods)
        if best_slot is None or best < self.min_occurrences or best / observed < self.min_share:
            return None
        starts = sorted(v for s in (best_slot - 1, best_slot, best_slot + 1)
                        for v in slots.get(s, {}).values())
        typical = starts[len(starts) // 2]
        window = {best_slot - 1, best_slot, best_slot + 1}
        kinds = Counter(e.kind for e in evs if int((e.at % period) // self.slot_s) in window)
        cause = kinds.most_common(1)[0][0]
        share = best / observed
        priority = "high" if share >= 0.8 else "medium" if share >= 0.6 else "low"
        unit = "days" if frequency == "daily" else "weeks"
        return Pattern(service, frequency, typical, best, observed, cause,
                       RECOMMENDED.get(cause, "restart"), last, priority,
                       f"one incident on {share:.0%} of {unit} ({best} of {observed}) "
                       "could be prevented")


@dataclass(frozen=True, slots=True)
class PreventiveAction:
    pattern: Pattern
    due_at: float  # when the pattern is expected
    act_at: float  # when to act (due_at - lead)


@dataclass
class ProactivePreventionEngine:
    """Which patterns are due within ``lead_s``; each expected occurrence once."""

    patterns: list[Pattern] = field(default_factory=list)
    lead_s: float = 300.0
    # (service, expected start) of the occurrences already acted on: kept by the caller
    # across restarts, so that one occurrence is prevented once
    acted: set[tuple[str, float]] = field(default_factory=set)

    def due(self, now: float) -> list[PreventiveAction]:
        out = []
        for p in self.patterns:
            expected = p.next_after(now - 1e-9)
            if expected - now <= self.lead_s and (p.service, expected) not in self.acted:
                self.acted.add((p.service, expected))
                out.append(PreventiveAction(p, expected, expected - self.lead_s))
        # forget occurrences long past: the set stays as small as the pattern table
        self.acted = {(s, t) for s, t in self.acted if t > now - 2 * 86400}
        return out
