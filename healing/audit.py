"""Audit records (seed 5.2): what failed, what was done about it, and proof it was not altered.

Records are plain, JSON-safe values. Each writer (one per process) numbers its records and
chains them: ``hash = sha256(prev_hash + canonical(record))``. A verifier can then tell an
altered record (its hash no longer matches), a removed one (a gap in the writer's
sequence) and a reordered one (a broken link); the signed checkpoints of
:mod:`healing.audit_checkpoint` show what a chain alone cannot (a cut-off tail, a whole
chain removed, a chain recomputed without the key). Identifiers never enter a record in clear:
builders take a ``pseudonymize`` function and store only its output.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .safety import ClinicalContext

__all__ = [
    "GENESIS",
    "AuditKind",
    "AuditRecord",
    "AuditSink",
    "ChainBreak",
    "PatientImpact",
    "chain",
    "circuit_transition",
    "failure_event",
    "operator_action",
    "record_digest",
    "recovery_step",
]

GENESIS = "0" * 64


class AuditKind(enum.Enum):
    FAILURE_EVENT = "failure_event"
    RECOVERY_STEP = "recovery_step"
    CIRCUIT_TRANSITION = "circuit_transition"
    OPERATOR_ACTION = "operator_action"


class PatientImpact(enum.Enum):
    NONE = "none"
    DELAY = "delay"
    DEGRADED_SERVICE = "degraded_service"
    SERVICE_UNAVAILABLE = "service_unavailable"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit record. ``writer``/``seq``/``prev_hash``/``hash`` are set by :func:`chain`."""

    id: str
    kind: AuditKind
    at: float  # UTC epoch seconds
    service: str
    data: Mapping[str, Any]
    writer: str = ""
    seq: int = -1
    prev_hash: str = ""
    hash: str = ""

    def body(self) -> dict[str, Any]:
        """The hashed content: everything but the hash itself."""
        return {"id": self.id, "kind": self.kind.value, "at": self.at, "service": self.service,
                "data": self.data, "writer": self.writer, "seq": self.seq,
                "prev_hash": self.prev_hash}

    def to_json(self) -> str:
        return json.dumps({**self.body(), "hash": self.hash}, sort_keys=True,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> AuditRecord:
        d = json.loads(line)
        return cls(d["id"], AuditKind(d["kind"]), float(d["at"]), d["service"], d["data"],
                   d["writer"], int(d["seq"]), d["prev_hash"], d["hash"])


def _digest(prev_hash: str, body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def record_digest(record: AuditRecord, raw_kind: str | None = None) -> str:
    """The hash ``record`` should carry; ``raw_kind`` stands for a stored kind that is not
    an :class:`AuditKind` (a tampered row), so such a row is still checked, not refused."""
    body = record.body()
    if raw_kind is not None:
        body["kind"] = raw_kind
    return _digest(record.prev_hash, body)


def chain(record: AuditRecord, writer: str, seq: int, prev_hash: str) -> AuditRecord:
    """``record`` placed at ``seq`` in ``writer``'s chain after ``prev_hash``."""
    placed = replace(record, writer=writer, seq=seq, prev_hash=prev_hash, hash="")
    return replace(placed, hash=_digest(prev_hash, placed.body()))


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """One problem found in the trail: where (writer, seq, record, checkpoint) and what."""

    writer: str
    seq: int
    record_id: str | None
    problem: str
    checkpoint: str | None = None


class AuditSink(Protocol):
    """Where the guard's audit records go. ``append`` returns once the record is durable;
    ``pseudonymize`` turns an identifier into its keyed stand-in (the sink owns the key)."""

    def append(self, record: AuditRecord) -> None: ...

    async def aappend(self, record: AuditRecord) -> None: ...

    def pseudonymize(self, identifier: str) -> str: ...


Pseudonymize = Callable[[str], str]


def _new_id() -> str:
    return uuid.uuid4().hex


def _clinical(context: ClinicalContext, pseudonymize: Pseudonymize) -> dict[str, Any]:
    return {
        "operation_type": context.operation_type.value,
        "criticality": context.criticality.value,
        "patient": pseudonymize(context.patient_id) if context.patient_id else None,
        "clinician": pseudonymize(context.clinician_id) if context.clinician_id else None,
        "requires_audit": context.requires_audit,
    }


def failure_event(
    *, service: str, at: float, context: ClinicalContext, pseudonymize: Pseudonymize,
    error_kind: str, error: str, provider: str | None, recovery_actions: list[str],
    served_by: str | None, integrity: Mapping[str, Any] | None, clinician_notified: bool,
    patient_impact: PatientImpact, record_id: str | None = None,
) -> AuditRecord:
    """A failed call and what the guard did about it (seed 5.2's ``AuditedFailureEvent``)."""
    return AuditRecord(record_id or _new_id(), AuditKind.FAILURE_EVENT, at, service, {
        "clinical_context": _clinical(context, pseudonymize),
        "provider": provider,
        "error_kind": error_kind,
        "error": error[:500],
        "recovery_actions": list(recovery_actions),
        "served_by": served_by,
        "integrity_validation": dict(integrity) if integrity else {"performed": False},
        "clinician_notified": clinician_notified,
        "patient_impact": patient_impact.value,
    })


def recovery_step(*, service: str, at: float, workflow_id: str, step: int, action: str,
                  status: str, inputs: Mapping[str, Any], result: Any, duration_s: float,
                  validation: Mapping[str, Any] | None = None,
                  record_id: str | None = None) -> AuditRecord:
    return AuditRecord(record_id or _new_id(), AuditKind.RECOVERY_STEP, at, service, {
        "workflow_id": workflow_id, "step": step, "action": action, "status": status,
        "inputs": dict(inputs), "result": result, "duration_s": duration_s,
        "validation": dict(validation) if validation else None,
    })


def circuit_transition(*, service: str, at: float, circuit: str, from_state: str,
                       to_state: str, reason: str, failure_rate: float | None = None,
                       slow_call_rate: float | None = None,
                       record_id: str | None = None) -> AuditRecord:
    return AuditRecord(record_id or _new_id(), AuditKind.CIRCUIT_TRANSITION, at, service, {
        "circuit": circuit, "from_state": from_state, "to_state": to_state, "reason": reason,
        "failure_rate": failure_rate, "slow_call_rate": slow_call_rate,
    })


def operator_action(*, service: str, at: float, operator: str, action: str,
                    pseudonymize: Pseudonymize, details: Mapping[str, Any] | None = None,
                    record_id: str | None = None) -> AuditRecord:
    return AuditRecord(record_id or _new_id(), AuditKind.OPERATOR_ACTION, at, service, {
        "operator": pseudonymize(operator), "action": action, "details": dict(details or {}),
    })
