"""The load generator's own log, and the checks made against it after an experiment.

Jepsen's rule: judge a system by a history of what its clients sent and got, never by what
the system says of itself. Every request the generator sends becomes one :class:`Entry`,
filled in when its answer (or its explicit failure) comes back. After an experiment the
entries are checked against the clinical safety rules, against the audit trail (every
request that was not answered by its primary has exactly one failure record, found by its
patient's pseudonym) and against the metric counters (exact, per service).

Pure: no I/O here; the experiment reads the stores and hands their contents in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Entry", "Violations", "check_answers", "check_audit", "check_counters",
           "check_steps", "compare_groups", "tally"]

PRIMARY, FALLBACK, EXPLICIT, ERROR, PENDING = (
    "primary", "fallback", "explicit", "error", "pending")


@dataclass(slots=True)
class Entry:
    """One request as the generator sent it and what came back."""

    id: int
    service: str
    operation: str  # diagnostic, prescriptive, informational (seed 5.1)
    criticality: str  # life_critical, high, medium, low
    patient: str  # the identifier sent; only its pseudonym may appear anywhere else
    due: float  # when the open-loop schedule said to send it (seconds from the start)
    sent: float = 0.0
    done: float | None = None
    outcome: str = PENDING  # primary, fallback, explicit, error, pending
    tier: str | None = None  # the tier that answered
    method: str | None = None  # the tier's method (cached_data, alternative_provider...)
    staleness_s: float | None = None
    warning: str | None = None
    guidance: str | None = None  # what an explicit failure told the clinician
    error: str | None = None  # an unexpected error: its type and message

    @property
    def answered(self) -> bool:
        return self.outcome in (PRIMARY, FALLBACK)


@dataclass
class Violations:
    """What an experiment broke, by rule; empty lists when it kept every promise."""

    by_rule: dict[str, list[str]] = field(default_factory=dict)

    def add(self, rule: str, what: str) -> None:
        self.by_rule.setdefault(rule, []).append(what)

    def merge(self, other: Violations) -> Violations:
        for rule, items in other.by_rule.items():
            self.by_rule.setdefault(rule, []).extend(items)
        return self

    def count(self, rule: str) -> int:
        return len(self.by_rule.get(rule, []))

    def __bool__(self) -> bool:
        return any(self.by_rule.values())

    def summary(self, limit: int = 3) -> dict[str, Any]:
        return {rule: {"count": len(items), "first": items[:limit]}
                for rule, items in sorted(self.by_rule.items()) if items}


def check_answers(entries: Iterable[Entry], allowed: Mapping[str, set[str]]) -> Violations:
    """The clinical safety rules, request by request.

    ``allowed`` maps each service to the labels of the tiers its strategy may answer with
    (``primary`` is always allowed)."""
    v = Violations()
    for e in entries:
        if e.outcome == PENDING:
            v.add("unanswered", f"request {e.id} ({e.service}) never came back")
        elif e.outcome == ERROR:
            v.add("unexpected_error", f"request {e.id} ({e.service}): {e.error}")
        elif e.outcome == EXPLICIT and not e.guidance:
            v.add("failure_without_guidance", f"request {e.id} ({e.service})")
        elif e.outcome == FALLBACK:
            if e.criticality == "life_critical":
                v.add("life_critical_substitute",
                      f"request {e.id} ({e.service}) answered by {e.tier}")
            if e.operation == "prescriptive" and e.method == "cached_data":
                v.add("prescriptive_cached", f"request {e.id} ({e.service}) got cached data")
            if e.tier not in allowed.get(e.service, set()):
                v.add("tier_not_allowed", f"request {e.id} ({e.service}) answered by {e.tier}")
            if e.method == "cached_data" and not e.warning:
                v.add("stale_without_warning", f"request {e.id} ({e.service})")
    return v


def check_audit(entries: Iterable[Entry], failure_patients: Counter[str],
                pseudonymize: Callable[[str], str]) -> tuple[Violations, dict[str, int]]:
    """Every request that its primary did not answer has exactly one failure record.

    Patients come from a pool (so that cached answers can exist), so the check is per
    patient: the trail holds, for each patient's pseudonym, as many failure records as the
    generator saw that patient's requests fail over or fail. ``failure_patients`` counts
    the trail's failure records by patient pseudonym (this experiment's patients only).
    Returns the violations and the tally: records expected, found, lost, duplicated and
    unexplained (records for patients none of whose requests failed)."""
    v = Violations()
    expected: Counter[str] = Counter()
    for e in entries:
        if e.outcome in (FALLBACK, EXPLICIT):
            expected[pseudonymize(e.patient)] += 1
    lost, duplicated = _reconcile(expected, failure_patients, v, "audit",
                                  lambda pid: f"patient {pid}")
    unexplained = sum(n for pid, n in failure_patients.items() if pid not in expected)
    if unexplained:
        v.add("audit_unexplained",
              f"{unexplained} failure records for patients whose requests all succeeded")
    total = sum(expected.values())
    return v, {"expected": total, "found": total - lost, "lost": lost,
               "duplicated": duplicated, "unexplained": unexplained}


def check_steps(runs: Iterable[Mapping[str, Any]], audited: Counter[tuple[str, int, str]]
                ) -> tuple[Violations, dict[str, int]]:
    """Every recovery step the orchestrator reports is in the audit trail exactly once.

    ``runs`` are the API's runs with their ``steps``; ``audited`` counts the trail's
    recovery-step records by (run id, step, status)."""
    v = Violations()
    expected = Counter((r["run_id"], s["step"], s["status"]) for r in runs
                       for s in r.get("steps", []))
    lost, _ = _reconcile(expected, audited, v, "step",
                         lambda key: f"run {key[0]} step {key[1]} {key[2]}")
    return v, {"expected": sum(expected.values()), "lost": lost}


def _reconcile(expected: Counter[Any], found: Mapping[Any, int], v: Violations, rule: str,
               name: Callable[[Any], str]) -> tuple[int, int]:
    """Records lost and duplicated, key by key; each adds a ``{rule}_lost`` or
    ``{rule}_duplicated`` violation."""
    lost = duplicated = 0
    for key, n in expected.items():
        got = found.get(key, 0)
        if got < n:
            lost += n - got
            v.add(f"{rule}_lost", f"{name(key)}: {got} records of {n}")
        elif got > n:
            duplicated += got - n
            v.add(f"{rule}_duplicated", f"{name(key)}: {got} records, {n} expected")
    return lost, duplicated


def check_counters(entries: Iterable[Entry], counters: Mapping[str, Mapping[str, int]]
                   ) -> tuple[Violations, dict[str, dict[str, int]]]:
    """The metric counters equal the generator's own counts, per service: requests, and
    requests answered by a fallback tier. ``counters`` is per service the recorder's
    ``total`` and ``fallbacks`` as read back from the store."""
    v = Violations()
    mine: dict[str, Counter[str]] = {}
    for e in entries:
        c = mine.setdefault(e.service, Counter())
        c["total"] += 1
        c["fallbacks"] += e.outcome == FALLBACK
    out = {}
    for service, c in sorted(mine.items()):
        theirs = counters.get(service, {})
        out[service] = {"sent": c["total"], "counted": int(theirs.get("total", 0)),
                        "fallbacks": c["fallbacks"],
                        "fallbacks_counted": int(theirs.get("fallbacks", 0))}
        for key in ("total", "fallbacks"):
            if int(theirs.get(key, 0)) != c[key]:
                v.add("counter_mismatch",
                      f"{service} {key}: counted {theirs.get(key, 0)}, sent {c[key]}")
    return v, out


def tally(entries: Iterable[Entry]) -> dict[str, Any]:
    """Requests sent and how they were answered: by outcome and by tier."""
    outcomes: Counter[str] = Counter()
    tiers: Counter[str] = Counter()
    for e in entries:
        outcomes[e.outcome] += 1
        if e.answered:
            tiers[e.tier or PRIMARY] += 1
    sent = sum(outcomes.values())
    answered = outcomes[PRIMARY] + outcomes[FALLBACK]
    return {"sent": sent, "answered": answered, "by_outcome": dict(sorted(outcomes.items())),
            "by_tier": dict(sorted(tiers.items())),
            "availability": answered / sent if sent else None}


def compare_groups(entries: Iterable[Entry], faulted: set[str],
                   window: tuple[float, float]) -> dict[str, Any]:
    """Netflix ChAP's comparison, on one run: the requests of the services the faults aimed
    at (the experiment group) beside those of every other service (the control group), while
    the faults were on, and the control group before any fault.

    A control group that answers as before shows the fault stayed where it was put; one that
    got slower or answered less shows its blast radius (a slow provider holding workers every
    request shares). Latency is what a patient waited: from when the request was due to its
    answer, queueing included.
    """
    start, end = window
    during: dict[str, list[Entry]] = {"experiment": [], "control": []}
    before: list[Entry] = []
    for e in entries:
        group = "experiment" if e.service in faulted else "control"
        if start <= e.due < end:
            during[group].append(e)
        elif e.due < start and group == "control":
            before.append(e)
    return {"window_s": [round(start, 1), round(end, 1)], "faulted": sorted(faulted),
            "experiment": _group(during["experiment"]), "control": _group(during["control"]),
            "control_before": _group(before)}


def _group(entries: list[Entry]) -> dict[str, Any]:
    done = [e for e in entries if e.done is not None]
    if not done:
        return {"requests": len(entries)}
    waits = sorted(e.done - e.due for e in done)  # type: ignore[operator]
    return {"requests": len(entries),
            "answered": round(sum(e.answered for e in entries) / len(entries), 4),
            "by_primary": round(sum(e.outcome == PRIMARY for e in entries) / len(entries), 4),
            "p50_s": round(waits[len(waits) // 2], 4),
            "p99_s": round(waits[min(len(waits) - 1, int(len(waits) * 0.99))], 4)}
