"""Availability SLOs, error budgets, multiwindow multi-burn-rate alerts, and two-key paging.

The seed asks for 99.9 % availability. An :class:`SLO` says what share of a service's
requests must be answered (through the primary or an allowed fallback tier: what a patient
sees) over a period; the rest is the **error budget**. The **burn rate** over a window is the
share of requests that went unanswered in it, divided by the budget's share: burning at 1
spends the budget exactly over the period, at 14.4 spends 2 % of a 30-day budget in an hour.

:class:`ErrorBudget` keeps, per service, the answered and unanswered counts in each window the
rules need, and raises the alerts of Google's SRE workbook (chapter 5, "Alerting on SLOs"):
each :class:`BurnRule` fires when the burn rate is over its factor in both its long window
(significance: enough budget spent to matter) and its short one (the problem is still going
on, so the alert resets soon after it stops). The defaults, :data:`WORKBOOK`, page at 14.4
over 1 h and 5 min and at 6 over 6 h and 30 min, and open a ticket at 1 over 3 days and 6 h.

:class:`Pager` decides who is told. A burn-rate alert knows users are hurt but not early; a
detector (the predictive monitor's anomaly, a failed health check) is early but fires on
things users never see (a provider's circuit opens and the fallback answers everything). In
``two_key`` mode, the default, a page goes out only when a page-level burn-rate alert and a
detection for the same service agree within ``agree_s``; either alone opens a ticket. The
other modes (``detection`` alone, ``burn`` alone) are there to be measured against
(``simulation.paging``). One incident is paged once: a ticket can be raised to a page, and
the incident closes when both keys have been quiet for ``quiet_s``.

Pure: times are given by the caller, in seconds on any one clock.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from .config import _check, as_enum, check_positive

__all__ = ["WORKBOOK", "BurnAlert", "BurnRule", "ErrorBudget", "Notice", "Pager",
           "PagingMode", "SLO"]

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class BurnRule:
    severity: str  # "page" | "ticket"
    factor: float  # burn rate both windows must reach
    long_s: float
    short_s: float

    def __post_init__(self) -> None:
        _check(self.severity in ("page", "ticket"), "severity", self.severity,
               "must be 'page' or 'ticket'")
        check_positive("factor", self.factor)
        check_positive("short_s", self.short_s)
        _check(self.long_s > self.short_s, "long_s", self.long_s,
               f"must be longer than short_s ({self.short_s})")


WORKBOOK = (BurnRule("page", 14.4, 3600.0, 300.0), BurnRule("page", 6.0, 6 * 3600.0, 1800.0),
            BurnRule("ticket", 1.0, 3 * DAY, 6 * 3600.0))


@dataclass(frozen=True)
class SLO:
    """``objective`` of requests answered over ``period_s``; alerts by ``rules``."""

    objective: float = 0.999
    period_s: float = 30 * DAY
    rules: tuple[BurnRule, ...] = WORKBOOK

    def __post_init__(self) -> None:
        _check(isinstance(self.objective, float | int) and 0 < self.objective < 1,
               "objective", self.objective, "must be in (0, 1), say 0.999")
        check_positive("period_s", self.period_s)
        _check(bool(self.rules), "rules", self.rules, "need at least one burn-rate rule")

    @property
    def budget(self) -> float:
        """The share of requests that may go unanswered."""
        return 1.0 - self.objective


@dataclass(frozen=True, slots=True)
class BurnAlert:
    service: str
    severity: str
    rule: BurnRule
    burn_long: float
    burn_short: float
    at: float

    def describe(self) -> str:
        r = self.rule
        return (f"{self.service}: error budget burning at {self.burn_long:.1f}x over "
                f"{r.long_s / 3600:g} h and {self.burn_short:.1f}x over {r.short_s / 60:g} min "
                f"(alert at {r.factor:g}x)")


# A window keeps at most this many buckets: the 3-day window counts in 6-minute buckets,
# the 5-minute one in the finest (memory stays flat however long the window).
_MAX_BUCKETS = 720


class _Window:
    def __init__(self, length_s: float, finest_s: float) -> None:
        self.length_s = length_s
        self.step = max(finest_s, length_s / _MAX_BUCKETS)
        self.buckets: deque[list[float]] = deque()  # [bucket index, total, bad]
        self.total = self.bad = 0.0

    def add(self, at: float, total: float, bad: float) -> None:
        b = int(at // self.step)
        for entry in reversed(self.buckets):  # late events land a bucket or two back
            if entry[0] == b:
                entry[1] += total
                entry[2] += bad
                break
            if entry[0] < b:
                self._insert(b, total, bad)
                break
        else:
            self._insert(b, total, bad)
        self.total += total
        self.bad += bad
        self.expire(at)  # a window nobody asks about still stays its own length

    def _insert(self, b: int, total: float, bad: float) -> None:
        if not self.buckets or self.buckets[-1][0] < b:
            self.buckets.append([b, total, bad])
            return
        entries = sorted([*self.buckets, [b, total, bad]], key=lambda e: e[0])
        self.buckets = deque(entries)

    def expire(self, now: float) -> None:
        """Drop the buckets that start before ``now - length``: the window is the buckets
        from the one starting at or after it (a minute-aligned hour is 60 minutes)."""
        while self.buckets and self.buckets[0][0] * self.step < now - self.length_s:
            _, total, bad = self.buckets.popleft()
            self.total -= total
            self.bad -= bad

    def ratio(self, now: float) -> float | None:
        self.expire(now)
        return self.bad / self.total if self.total > 0 else None


class ErrorBudget:
    """Per service: the windows of ``slo``'s rules and its period; the burn rates and
    alerts at a given time, and the budget left."""

    def __init__(self, slo: SLO | None = None, finest_s: float = 60.0) -> None:
        self.slo = slo or SLO()
        check_positive("finest_s", finest_s)
        self.finest_s = finest_s
        lengths = {self.slo.period_s}
        for r in self.slo.rules:
            lengths |= {r.long_s, r.short_s}
        self.lengths = sorted(lengths)
        self._windows: dict[str, dict[float, _Window]] = {}

    def observe(self, service: str, at: float, total: float, bad: float) -> None:
        """``total`` requests at ``at``, ``bad`` of them unanswered."""
        windows = self._windows.get(service)
        if windows is None:
            windows = self._windows[service] = {n: _Window(n, self.finest_s)
                                                for n in self.lengths}
        for w in windows.values():
            w.add(at, total, bad)

    def services(self) -> list[str]:
        return sorted(self._windows)

    def burn(self, service: str, window_s: float, now: float) -> float:
        """The burn rate over the last ``window_s`` (one of the rules' windows or the period);
        0 with no requests in it."""
        ratio = self._windows[service][window_s].ratio(now) if service in self._windows \
            else None
        return 0.0 if ratio is None else ratio / self.slo.budget

    def alerts(self, service: str, now: float) -> list[BurnAlert]:
        out = []
        for r in self.slo.rules:
            long_, short = self.burn(service, r.long_s, now), self.burn(service, r.short_s, now)
            if long_ >= r.factor and short >= r.factor:
                out.append(BurnAlert(service, r.severity, r, long_, short, now))
        return out

    def remaining(self, service: str, now: float) -> float:
        """The share of the period's error budget left (negative: overspent)."""
        return 1.0 - self.burn(service, self.slo.period_s, now)


class PagingMode(enum.Enum):
    TWO_KEY = "two_key"
    DETECTION = "detection"
    BURN = "burn"


@dataclass(frozen=True, slots=True)
class Notice:
    service: str
    level: str  # "page" | "ticket"
    at: float
    why: str


@dataclass
class _Incident:
    level: str
    last_active: float


@dataclass
class Pager:
    mode: PagingMode | str = PagingMode.TWO_KEY
    agree_s: float = 900.0  # a detection this recent agrees with a burn-rate alert
    quiet_s: float = 3600.0  # both keys quiet this long: the incident is over
    _detected: dict[str, float] = field(default_factory=dict)
    _incidents: dict[str, _Incident] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mode = as_enum(PagingMode, self.mode, "mode")
        check_positive("agree_s", self.agree_s)
        check_positive("quiet_s", self.quiet_s)

    def paged(self, service: str) -> bool:
        """Whether someone has been paged for an incident of ``service`` still open."""
        incident = self._incidents.get(service)
        return incident is not None and incident.level == "page"

    def detected(self, service: str, at: float) -> None:
        """A detector fired for ``service`` at ``at``."""
        self._detected[service] = max(at, self._detected.get(service, at))

    def decide(self, service: str, alerts: list[BurnAlert], now: float) -> Notice | None:
        """What to send now for ``service`` given its burn-rate alerts in force: a page or a
        ticket when an incident opens or is raised to a page, else nothing."""
        seen = self._detected.get(service)
        detection = seen is not None and now - seen <= self.agree_s
        burn_page = any(a.severity == "page" for a in alerts)
        level = None
        if self.mode is PagingMode.DETECTION:
            level = "page" if detection else None
        elif self.mode is PagingMode.BURN:
            level = "page" if burn_page else "ticket" if alerts else None
        elif burn_page and detection:
            level = "page"
        elif alerts or detection:
            level = "ticket"
        incident = self._incidents.get(service)
        if level is None:
            if incident is not None and now - incident.last_active > self.quiet_s:
                del self._incidents[service]
            return None
        if incident is not None:
            incident.last_active = now
            if incident.level == "page" or level == "ticket":
                return None
            incident.level = "page"  # a ticket raised to a page
        else:
            self._incidents[service] = _Incident(level, now)
        why = "; ".join(a.describe() for a in alerts) or "no budget burning"
        if detection:
            why += "; a detector fired"
        return Notice(service, level, now, why)
