"""Recurring failures (seed 7.1) and what to do before they recur (seed 7.3).

:class:`PatternRecognizer` turns failure history (detections, audit records: anything with a
service, a time and a kind) into :class:`Pattern`\\ s by time: a service failing at about
the same time of day on most days, or the same time on the same weekday in most weeks (a
service can have several, each with its own typical cause). Each pattern carries its
frequency, occurrences, typical cause, last occurrence, the action recommended before it and
a priority with the impact it is estimated to avoid. :meth:`PatternRecognizer.combinations`
groups by service combination instead: the services that fail together, which one fails
first, and with what cause.

:class:`ProactivePreventionEngine` says, at any moment, which patterns are due within the
lead time, once per expected occurrence: the caller turns those into preventive workflows
through the orchestrator, where the clinical safety validator clears them like any other.

Pure: times are UTC epoch seconds given by the caller.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from healing.config import check_count, check_positive
from healing.outcome import NOT_CALLED

__all__ = ["CoFailure", "FailureEvent", "Pattern", "PatternRecognizer", "PreventiveAction",
           "ProactivePreventionEngine", "incidents"]

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


def incidents(failures: Iterable[FailureEvent], signals: Iterable[tuple[str, float, str]],
              around_s: float = 120.0) -> list[FailureEvent]:
    """What recurring patterns are learnt from in an audit trail: each moment selfheal saw
    an incident — a circuit opening, a recovery run starting (``signals``: service, time,
    what) — dated from the first of the service's failures in the ``around_s`` before it,
    with the cause seen most among its failures within ``around_s`` of it (else what the
    signal was). Failures alone are not incidents: a healthy service has a
    few at any hour, and a pattern learnt from those would restart it at a random time every
    day. (The simulator learns from its detections, which are such signals already.)"""
    by_service: dict[str, list[FailureEvent]] = defaultdict(list)
    for f in failures:
        if f.kind not in NOT_CALLED:  # refused by an open circuit: says nothing of the cause
            by_service[f.service].append(f)
    times: dict[str, list[float]] = {}
    for service, fs in by_service.items():
        fs.sort(key=lambda f: f.at)
        times[service] = [f.at for f in fs]
    out = []
    for service, at, what in signals:
        fs, ts = by_service.get(service, []), times.get(service, [])
        near = fs[bisect.bisect_left(ts, at - around_s):bisect.bisect_right(ts, at + around_s)]
        kind = Counter(f.kind for f in near).most_common(1)[0][0] if near else what
        # it began with the failures that led to the signal, not when the signal came
        began = min((f.at for f in near if f.at <= at), default=at)
        out.append(FailureEvent(service, began, kind))
    return sorted(out, key=lambda e: (e.at, e.service))


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


@dataclass(frozen=True, slots=True)
class CoFailure:
    """Services that fail together (seed 7.1's service combinations): on ``occurrences``
    separate incidents each of ``services`` failed within ``together_s`` of the others.
    ``leader`` is the one that failed first most often (in ``led`` of them): heal it first,
    the others usually follow it."""

    services: tuple[str, ...]
    occurrences: int
    leader: str
    led: int
    typical_spread_s: float  # first to last service failing, the median incident
    typical_cause: str  # what the leader showed first, most often
    recommended_action: str
    last_occurrence: float
    priority: str
    estimated_impact: str

    def describe(self) -> str:
        return (f"{' + '.join(self.services)} fail together ({self.occurrences} incidents, "
                f"{self.leader} first in {self.led}, typically with {self.typical_cause}, "
                f"all within {self.typical_spread_s:.0f} s): {self.recommended_action}")


@dataclass
class PatternRecognizer:
    """Finds daily and weekly recurrences, and services that fail together.

    Failures are first grouped into incidents per service (events less than a slot apart
    are one incident, started by its first event, its cause the kind seen most in it), so
    an hour-long outage is one occurrence, not sixty. A service can have several
    recurrences (a 02:00 backup and a 14:00 peak): each one found takes its incidents out
    and the search goes on, up to ``max_per_service``.

    Args:
        slot_s: events within one slot of each other count as the same time of day.
        min_occurrences: periods (days or weeks) a pattern must have happened on; incidents
            a combination must have happened in.
        min_share: share of the observed periods it must have happened on.
        together_s: services failing within this of each other fail together.
        max_per_service: recurrences reported per service, at most.
    """

    slot_s: float = 900.0
    min_occurrences: int = 3
    min_share: float = 0.5
    together_s: float = 300.0
    max_per_service: int = 4

    def __post_init__(self) -> None:
        check_positive("slot_s", self.slot_s)
        check_count("min_occurrences", self.min_occurrences)
        check_positive("min_share", self.min_share)
        check_positive("together_s", self.together_s)
        check_count("max_per_service", self.max_per_service)

    def _incidents(self, evs: list[FailureEvent]) -> list[FailureEvent]:
        """``evs`` (one service's, by time) as incidents: each one's first event, with the
        kind seen most in it."""
        out: list[FailureEvent] = []
        group: list[FailureEvent] = []
        for e in [*evs, None]:
            if group and (e is None or e.at - group[-1].at > self.slot_s):
                kind = Counter(g.kind for g in group).most_common(1)[0][0]
                out.append(FailureEvent(group[0].service, group[0].at, kind))
                group = []
            if e is not None:
                group.append(e)
        return out

    def fit(self, events: Iterable[FailureEvent]) -> list[Pattern]:
        by_service: dict[str, list[FailureEvent]] = defaultdict(list)
        for e in events:
            by_service[e.service].append(e)
        out = []
        for service, evs in sorted(by_service.items()):
            evs.sort(key=lambda e: e.at)
            span = (evs[0].at, evs[-1].at)
            left = self._incidents(evs)
            for _ in range(self.max_per_service):
                found = None
                for frequency, period in (("daily", DAY), ("weekly", WEEK)):
                    found = self._recurring(service, left, span, frequency, period)
                    if found is not None:
                        break  # a daily pattern is also weekly: report the finer one
                if found is None:
                    break
                pattern, taken = found
                out.append(pattern)
                left = [e for e in left if id(e) not in taken]
        order = {"high": 0, "medium": 1, "low": 2}
        return sorted(out, key=lambda p: (order[p.priority], p.service, p.seconds_of_period))

    def _recurring(self, service: str, evs: list[FailureEvent], span: tuple[float, float],
                   frequency: str, period: float) -> tuple[Pattern, set[int]] | None:
        first, last = span
        observed = int((last - first) // period) + 1
        if observed < self.min_occurrences or len(evs) < self.min_occurrences:
            return None
        # the first incident of each period, in each slot of the period (and its neighbour)
        slots: dict[int, dict[int, float]] = defaultdict(dict)
        for e in evs:
            p, into = int(e.at // period), e.at % period
            slot = int(into // self.slot_s)
            slots[slot].setdefault(p, into)
        best_slot, best = None, 0
        for slot in sorted(slots):
            periods = set(slots[slot]) | set(slots.get(slot + 1, {})) | set(
                slots.get(slot - 1, {}))
            if len(periods) > best:
                best_slot, best = slot, len(periods)
        if best_slot is None or best < self.min_occurrences or best / observed < self.min_share:
            return None
        starts = sorted(v for s in (best_slot - 1, best_slot, best_slot + 1)
                        for v in slots.get(s, {}).values())
        typical = starts[len(starts) // 2]
        window = {best_slot - 1, best_slot, best_slot + 1}
        inside = [e for e in evs if int((e.at % period) // self.slot_s) in window]
        cause = Counter(e.kind for e in inside).most_common(1)[0][0]
        share = best / observed
        priority = "high" if share >= 0.8 else "medium" if share >= 0.6 else "low"
        unit = "days" if frequency == "daily" else "weeks"
        return Pattern(service, frequency, typical, best, observed, cause,
                       RECOMMENDED.get(cause, "restart"), max(e.at for e in inside),
                       priority, f"one incident on {share:.0%} of {unit} ({best} of "
                       f"{observed}) could be prevented"), {id(e) for e in inside}

    def combinations(self, events: Iterable[FailureEvent]) -> list[CoFailure]:
        """Sets of services whose incidents start within ``together_s`` of each other, on
        at least ``min_occurrences`` separate occasions; most frequent first."""
        by_service: dict[str, list[FailureEvent]] = defaultdict(list)
        for e in events:
            by_service[e.service].append(e)
        starts = sorted((i for evs in by_service.values()
                         for i in self._incidents(sorted(evs, key=lambda e: e.at))),
                        key=lambda e: e.at)
        clusters: list[list[FailureEvent]] = []
        for e in starts:  # a cluster grows while each start is near the one before
            if clusters and e.at - clusters[-1][-1].at <= self.together_s:
                clusters[-1].append(e)
            else:
                clusters.append([e])
        seen: dict[tuple[str, ...], list[list[FailureEvent]]] = defaultdict(list)
        for c in clusters:
            firsts: dict[str, FailureEvent] = {}
            for e in c:
                firsts.setdefault(e.service, e)
            if len(firsts) > 1:
                seen[tuple(sorted(firsts))].append(list(firsts.values()))
        out = []
        for services, incidents in seen.items():
            n = len(incidents)
            if n < self.min_occurrences:
                continue
            leads = Counter(min(i, key=lambda e: e.at).service for i in incidents)
            leader, led = leads.most_common(1)[0]
            causes = Counter(min(i, key=lambda e: e.at).kind for i in incidents
                             if min(i, key=lambda e: e.at).service == leader)
            spreads = sorted(max(e.at for e in i) - min(e.at for e in i) for i in incidents)
            many = len(services) >= 3 or n >= 2 * self.min_occurrences
            out.append(CoFailure(
                services, n, leader, led, spreads[len(spreads) // 2],
                causes.most_common(1)[0][0],
                f"heal {leader} first: the others followed it in {led} of {n}",
                max(e.at for i in incidents for e in i), "high" if many else "medium",
                f"{n} incidents touched {len(services)} services at once; healing "
                f"{leader} first could shorten each"))
        return sorted(out, key=lambda c: (-c.occurrences, c.services))


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
