"""Who would have been paged in a simulated run, by each paging rule (``healing.slo``).

A run's per-second counts give each service's answered and unanswered requests (what a patient
sees: an answer from the primary or an allowed fallback tier, or none); its detections are the
detector key. Minute by minute, the same :class:`~healing.slo.ErrorBudget` and
:class:`~healing.slo.Pager` the live monitor runs decide what is sent.

An incident **needs a human** when, while its fault acted, some service it touches (itself or
one depending on it) answered less than the SLO's objective of its requests; it is **missed**
when at no minute from its start until ten minutes after it ended was someone paged for an
open incident of any service (a page that went out earlier for an incident still open
counts: the on-call engineer is already on it). A
fault the fallbacks absorbed (every request answered) needs nobody woken: a page for it is
noise, which is what two-key paging removes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from healing.slo import SLO, ErrorBudget, Notice, Pager, PagingMode

from .records import RunResult

__all__ = ["PagingOutcome", "paging"]

STEP_S = 60
COVER_AFTER_S = 600.0


@dataclass
class PagingOutcome:
    mode: str
    notices: list[Notice] = field(default_factory=list)
    needs_human: int = 0
    missed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return sum(1 for n in self.notices if n.level == "page")

    @property
    def tickets(self) -> int:
        return sum(1 for n in self.notices if n.level == "ticket")


def paging(result: RunResult, mode: PagingMode | str, slo: SLO | None = None) -> PagingOutcome:
    """Replay ``result`` minute by minute through a pager in ``mode``."""
    slo = slo or SLO()
    budget, pager = ErrorBudget(slo, finest_s=STEP_S), Pager(mode)
    out = PagingOutcome(PagingMode(mode).value)
    detections = sorted(result.detections, key=lambda d: d.at)
    duration = int(result.scenario.duration_s)
    k = 0
    paged_at: list[float] = []  # the minutes at which someone was on an open paged incident
    for t in range(0, duration, STEP_S):
        now = float(min(t + STEP_S, duration))
        for name, log in result.logs.items():
            total = sum(log.total[t:t + STEP_S])
            if total:
                budget.observe(name, t, total, total - sum(log.served[t:t + STEP_S]))
        while k < len(detections) and detections[k].at < now:
            pager.detected(detections[k].service, detections[k].at)
            k += 1
        for name in result.logs:
            notice = pager.decide(name, budget.alerts(name, now), now)
            if notice is not None:
                out.notices.append(notice)
        if any(pager.paged(name) for name in result.logs):
            paged_at.append(now)
    sc = result.scenario
    for f in result.incidents:
        if f.averted:
            continue
        start, end = int(f.start), int(f.actual_end) + 1
        touched = {f.spec.service} | sc.dependents(f.spec.service)
        worst = min((_availability(result, s, start, end) for s in touched
                     if s in result.logs), default=1.0)
        if worst >= slo.objective:
            continue
        out.needs_human += 1
        if not any(start <= p <= f.actual_end + COVER_AFTER_S for p in paged_at):
            out.missed.append({"service": f.spec.service, "kind": f.spec.kind.value,
                               "start_s": f.start, "availability": round(worst, 4)})
    return out


def _availability(result: RunResult, service: str, start: int, end: int) -> float:
    log = result.logs[service]
    total = sum(log.total[start:end])
    return sum(log.served[start:end]) / total if total else 1.0
