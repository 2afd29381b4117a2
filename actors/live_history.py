"""Training history from the live stores: the Redis metric streams and the audit trail.

Outcomes come from each ``metrics:{service}`` stream (every error, a sample of successes);
trouble spans from the audit trail's circuit transitions: a service is in trouble from a
circuit of its opening (or being forced open) until that circuit closes again, or, if it never
did, until the last outcome seen. :func:`learning.history.buckets_from_events` turns the two
into labelled buckets, the same as for exported simulation event logs.

:func:`recorded_failures` reads what recurring-failure patterns are learnt from: the audit
trail's incidents (circuits opening, recovery runs starting), each with its failures' cause.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import redis
from sqlalchemy import Integer, cast, func, select

from learning.history import buckets_from_events
from learning.patterns import FailureEvent, incidents
from learning.training import Bucket

from .stores.audit_sql import AuditStore, circuit_transitions, failure_events, recovery_steps
from .stores.metric_stream import read_events

__all__ = ["INCIDENT_AROUND_S", "live_history", "read_transitions", "recorded_failures",
           "stream_services", "trouble_spans", "workflow_of"]

_OPEN = ("OPEN", "FORCED_OPEN")
_RUN_SUFFIX = re.compile(r"(-[0-9a-f]{8}|#[0-9]+)$")
INCIDENT_AROUND_S = 120.0  # an incident's cause: the failures this close to it


def trouble_spans(transitions: Iterable[tuple[float, str, str, str]], until: float
                  ) -> dict[str, list[tuple[float, float]]]:
    """Per service, the spans during which one of its circuits stood open or half-open
    (from opening until closed again), from circuit transitions ``(at, service, circuit,
    to_state)``; a circuit still open is open until ``until``."""
    opened: dict[str, float] = {}  # circuit -> since
    spans: dict[str, list[tuple[float, float]]] = {}
    for at, service, name, to in sorted(transitions, key=lambda t: t[0]):
        circuit = name.split(" (process", 1)[0]  # a process's view is its circuit's
        if to in _OPEN:
            opened.setdefault(circuit, at)
        elif to != "HALF_OPEN" and circuit in opened:  # trial calls: still in trouble
            spans.setdefault(service, []).append((opened.pop(circuit), at))
    for circuit, since in opened.items():
        spans.setdefault(circuit.split(":", 1)[0], []).append((since, until))
    return spans


def read_transitions(store: AuditStore, since: float | None = None,
                     until: float | None = None) -> list[tuple[float, str, str, str]]:
    """The audit trail's circuit transitions ``(at, service, circuit, to_state)`` between
    ``since`` and ``until`` (None: unbounded), from their table, not the whole ledger."""
    c = circuit_transitions
    q = select(c.c.at, c.c.service, c.c.circuit, c.c.to_state)
    if since is not None:
        q = q.where(c.c.at >= since)
    if until is not None:
        q = q.where(c.c.at <= until)
    with store.engine.connect() as conn:
        return [(float(at), s, circ, to) for at, s, circ, to in conn.execute(q)]


def stream_services(client: redis.Redis, prefix: str = "metrics") -> list[str]:
    """The services that have a metric stream."""
    out = set()
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        name = key.decode() if isinstance(key, bytes) else key
        if not name.endswith(":count") and client.type(name) == b"stream":
            out.add(name[len(prefix) + 1:])
    return sorted(out)


def live_history(client: redis.Redis, audit_url: str, services: list[str],
                 sample_rate: float, prefix: str = "metrics") -> dict[str, list[Bucket]]:
    events = []
    for service in services:
        for at, _latency, ok, error_kind, _tier, _provider in read_events(client, service,
                                                                         prefix):
            events.append((float(at), service, bool(ok), error_kind))
    until = max((e[0] for e in events), default=0.0)
    store = AuditStore(audit_url)
    try:
        trouble = trouble_spans(read_transitions(store), until)
    finally:
        store.dispose()
    return buckets_from_events(events, trouble, sample_rate)


def recorded_failures(store: AuditStore, since: float, until: float) -> list[FailureEvent]:
    """The incidents in the audit trail between ``since`` and ``until`` that recurring
    patterns are learnt from (:func:`learning.patterns.incidents`): each circuit opening and
    each recovery run that was not itself preventive, with the cause seen most among the
    service's failures around it (failures read one per service, error kind and minute: a
    burst of a thousand errors is one)."""
    f, c, r = failure_events, circuit_transitions, recovery_steps
    minute_f = _minute(store, f.c.at)
    qf = (select(f.c.service, f.c.error_kind, func.min(f.c.at))
          .where(f.c.at >= since - INCIDENT_AROUND_S, f.c.at <= until + INCIDENT_AROUND_S)
          .group_by(f.c.service, f.c.error_kind, minute_f))
    qc = (select(c.c.service, c.c.at)
          .where(c.c.at >= since, c.c.at <= until,
                 c.c.to_state.in_(("OPEN", "FORCED_OPEN"))))
    qr = (select(r.c.service, r.c.workflow_id, func.min(r.c.at))
          .where(r.c.at >= since, r.c.at <= until, r.c.workflow_id.not_like("prevent:%"))
          .group_by(r.c.service, r.c.workflow_id))
    with store.engine.connect() as conn:
        failures = [FailureEvent(s, float(at), kind) for s, kind, at in conn.execute(qf)]
        signals = [(s, float(at), "circuit_open") for s, at in conn.execute(qc)]
        signals += [(s, float(at), workflow_of(run)) for s, run, at in conn.execute(qr)]
    return incidents(failures, signals, INCIDENT_AROUND_S)


def workflow_of(run_id: str) -> str:
    """A recovery run's workflow: the live orchestrator names runs ``{workflow}-{8 hex}``,
    the simulator ``{workflow}#{n}``."""
    return _RUN_SUFFIX.sub("", run_id)


def _minute(store: AuditStore, at: Any) -> Any:
    """The minute an epoch time falls in: floor, as :mod:`actors.frames` counts it
    (PostgreSQL's cast to integer rounds; SQLite's truncates, which is floor here)."""
    if store.dialect == "postgresql":
        return func.floor(at / 60)
    return cast(at / 60, Integer)
