"""The failure event the guard writes for a failed call: what was tried, what served, the
patient impact. Separate from :mod:`healing.guard` so the call path reads on its own."""

from __future__ import annotations

from typing import Any

from .audit import AuditRecord, PatientImpact, failure_event
from .config import TierMethod
from .errors import ClinicalSafetyError
from .fallback import FallbackResult
from .outcome import NOT_CALLED
from .safety import ClinicalContext

__all__ = ["failure_record"]

_DEGRADED_TIERS = frozenset({TierMethod.CACHED_DATA, TierMethod.DEGRADED_MODE,
                             TierMethod.STATIC_FALLBACK})


def failure_record(service: str, provider: str | None, context: ClinicalContext, kind: str,
                   error: BaseException, served: FallbackResult | None,
                   final: BaseException | None, strategy: Any,
                   pseudonymize: Any, at: float) -> AuditRecord:
    """The failure event of a call that ``served`` answered, or that ended in ``final``."""
    if served is not None:
        actions = [f"{a.tier}: {a.reason}" for a in served.passed_over]
        actions.append(f"{served.tier}: served")
        impact = _impact_of(served, kind)
    else:
        attempts = getattr(final, "attempts", ())
        actions = [f"{a.tier}: {a.reason}" for a in attempts]
        if isinstance(final, ClinicalSafetyError):
            actions.append("fallback refused: explicit failure with clinical guidance")
        impact = PatientImpact.SERVICE_UNAVAILABLE
    check = strategy.integrity_check if strategy is not None else None
    integrity = {"performed": check is not None and served is not None,
                 "passed": True if (check is not None and served is not None) else None,
                 "validator": check.name if check is not None else None}
    notified = isinstance(final, ClinicalSafetyError) or (
        served is not None and served.warning is not None)
    return failure_event(
        service=service, at=at, context=context, pseudonymize=pseudonymize, error_kind=kind,
        error=f"{type(error).__name__}: {error}", provider=provider,
        recovery_actions=actions, served_by=served.tier if served is not None else None,
        integrity=integrity, clinician_notified=notified, patient_impact=impact)


def _impact_of(served: FallbackResult, kind: str) -> PatientImpact:
    if served.method in _DEGRADED_TIERS:
        return PatientImpact.DEGRADED_SERVICE
    # An alternative provider's answer is a full answer; it came late if the primary was
    # tried and failed first, and on time if an open circuit or a route skipped the primary.
    return PatientImpact.NONE if kind in NOT_CALLED else PatientImpact.DELAY
