"""Clinical safety: what a failing clinical service may and may not fall back to.

The seed's three rules (5.1), plus its fail-safe list (5.3):

1. Prescriptive operations never get cached data.
2. Life-critical operations never get a fallback: they fail explicitly, with guidance.
3. Diagnostic operations require data integrity validation of whatever is served.

The critical services (drug_interaction_check, emergency_triage, vital_signs_monitoring)
never fall back at all. Where a rule can be enforced by construction it is:
:meth:`ClinicalSafetyValidator.validate_strategy` refuses an unsafe fallback strategy when it
is registered, and the per-request checks here are the second line.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import FallbackTier, TierMethod, as_enum
from .errors import ConfigError, UnsafeStrategyError

if TYPE_CHECKING:
    from .fallback import FallbackStrategy

__all__ = [
    "Acuity",
    "CLINICAL_GUIDANCE",
    "CRITICAL_SERVICES",
    "ClinicalContext",
    "ClinicalSafetyValidator",
    "Criticality",
    "OperationType",
    "RecoveryAction",
    "ValidationResult",
    "pseudonym",
]


class OperationType(enum.Enum):
    DIAGNOSTIC = "diagnostic"
    PRESCRIPTIVE = "prescriptive"
    INFORMATIONAL = "informational"
    ADMINISTRATIVE = "administrative"


class Criticality(enum.Enum):
    LIFE_CRITICAL = "life_critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Acuity(enum.IntEnum):
    """How urgently a request needs its answer: the order admission sheds in (batch first).

    Lower is more urgent. A request's acuity defaults from its criticality (life-critical →
    ``LIFE_CRITICAL``, high → ``URGENT``, otherwise ``ROUTINE``); ``BATCH`` is only ever
    chosen by the caller (nightly re-analysis, report generation).
    """

    LIFE_CRITICAL = 0
    URGENT = 1
    ROUTINE = 2
    BATCH = 3

    @property
    def label(self) -> str:
        return self.name.lower()


_ACUITY_OF = {Criticality.LIFE_CRITICAL: Acuity.LIFE_CRITICAL, Criticality.HIGH: Acuity.URGENT,
              Criticality.MEDIUM: Acuity.ROUTINE, Criticality.LOW: Acuity.ROUTINE}


class RecoveryAction(enum.Enum):
    """The recovery actions of the seed's workflows (1.1)."""

    RETRY = "retry"
    FALLBACK = "fallback"
    SCALE = "scale"
    RESTART = "restart"
    ALERT = "alert"
    CACHE_WARM = "cache_warm"


CRITICAL_SERVICES: frozenset[str] = frozenset(
    {"drug_interaction_check", "emergency_triage", "vital_signs_monitoring"}
)

CLINICAL_GUIDANCE: Mapping[str, str] = {
    "drug_interaction_check": (
        "Interaction check unavailable: do not dispense or administer on the strength of this "
        "system. Verify interactions with a pharmacist or a current drug reference before any "
        "new prescription."
    ),
    "emergency_triage": (
        "Automated triage unavailable: triage manually by your local protocol (e.g. ESI or "
        "Manchester) and escalate any red-flag presentation to the senior clinician at once."
    ),
    "vital_signs_monitoring": (
        "Automated vital-signs monitoring unavailable: start manual observations at the "
        "frequency of your early-warning protocol and check bedside monitors directly."
    ),
    "pharmaguard": (
        "Unable to check interactions. Consult a pharmacist before prescribing or dispensing."
    ),
}

DEFAULT_GUIDANCE = (
    "This clinical service is unavailable: do not rely on it for this decision; follow your "
    "local manual procedure and escalate to the responsible clinician."
)


def pseudonym(identifier: str, key: bytes) -> str:
    """A keyed, irreversible stand-in for a patient or clinician id (HMAC-SHA256, 16 hex).

    Used wherever an identifier would otherwise reach a cache key, a log or a metric.
    """
    return hmac.new(key, identifier.encode(), hashlib.sha256).hexdigest()[:16]



@dataclass(frozen=True, slots=True)
class ClinicalContext:
    """What kind of clinical request this is (seed 5.1).

    Identifiers are kept out of ``repr`` so a context in a log line or a traceback does not
    leak them; use :meth:`describe` for anything that leaves the process.
    """

    operation_type: OperationType = OperationType.INFORMATIONAL
    criticality: Criticality = Criticality.MEDIUM
    patient_id: str | None = field(default=None, repr=False)
    clinician_id: str | None = field(default=None, repr=False)
    requires_audit: bool = True
    acuity: Acuity | None = None  # None: from the criticality

    def __post_init__(self) -> None:
        object.__setattr__(self, "operation_type",
                           as_enum(OperationType, self.operation_type, "operation_type"))
        criticality = as_enum(Criticality, self.criticality, "criticality")
        object.__setattr__(self, "criticality", criticality)
        if self.acuity is None:
            object.__setattr__(self, "acuity", _ACUITY_OF[criticality])
        else:
            acuity = self.acuity
            if isinstance(acuity, str):
                try:
                    acuity = Acuity[acuity.upper()]
                except KeyError:
                    acuity = None
            if not isinstance(acuity, Acuity):
                raise ConfigError("acuity", self.acuity,
                                  f"must be one of {[a.label for a in Acuity]}")
            # Admission never sheds life-critical requests: only life-critical requests may
            # claim that, and every life-critical request does.
            if (acuity is Acuity.LIFE_CRITICAL) != (criticality is Criticality.LIFE_CRITICAL):
                raise ConfigError("acuity", acuity.label,
                                  "is life_critical exactly when the criticality is")
            object.__setattr__(self, "acuity", acuity)
        for name in ("patient_id", "clinician_id"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, str) and v):
                raise ConfigError(name, "<redacted>", "must be a non-empty string or None")

    def describe(self) -> dict[str, Any]:
        """The context without identifiers: safe for logs, metrics and audit summaries."""
        return {
            "operation_type": self.operation_type.value,
            "criticality": self.criticality.value,
            "has_patient": self.patient_id is not None,
            "has_clinician": self.clinician_id is not None,
            "requires_audit": self.requires_audit,
            "acuity": self.acuity.label,  # type: ignore[union-attr]
        }


INFORMATIONAL_CONTEXT = ClinicalContext()


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """The validator's answer: allowed or not, which rule decided, and why."""

    allowed: bool
    reason: str = ""
    rule: str = ""
    requires_validation: bool = False


_ALLOWED = ValidationResult(True)


class ClinicalSafetyValidator:
    """Applies the seed's clinical safety rules to recovery actions and fallback tiers.

    Args:
        critical_services: services that never fall back (seed 5.3).
        guidance: clinical guidance per service for explicit failures.
    """

    def __init__(
        self,
        critical_services: Iterable[str] = CRITICAL_SERVICES,
        guidance: Mapping[str, str] = CLINICAL_GUIDANCE,
    ) -> None:
        self.critical_services = frozenset(critical_services)
        self.guidance = dict(guidance)

    def guidance_for(self, service: str) -> str:
        return self.guidance.get(service, DEFAULT_GUIDANCE)

    def is_fail_safe(self, service: str, context: ClinicalContext) -> bool:
        """True when this request must fail explicitly rather than fall back (rule 2, 5.3)."""
        return (service in self.critical_services
                or context.criticality is Criticality.LIFE_CRITICAL)

    def validate_recovery_action(
        self, action: RecoveryAction | str, context: ClinicalContext, service: str | None = None
    ) -> ValidationResult:
        """May ``action`` be taken for a service serving requests of this ``context``?"""
        action = as_enum(RecoveryAction, action, "action")
        if context.operation_type is OperationType.PRESCRIPTIVE and (
            action is RecoveryAction.CACHE_WARM
        ):
            return ValidationResult(False, "Prescriptive operations cannot use cached data",
                                    "rule_1_no_cache_for_prescriptive")
        if action is RecoveryAction.FALLBACK and (
            context.criticality is Criticality.LIFE_CRITICAL
            or (service is not None and service in self.critical_services)
        ):
            return ValidationResult(False, "Life-critical operations cannot use fallback",
                                    "rule_2_no_fallback_for_life_critical")
        if context.operation_type is OperationType.DIAGNOSTIC:
            return ValidationResult(True, "", "rule_3_diagnostic_requires_validation", True)
        return _ALLOWED

    def validate_tier(
        self, tier: FallbackTier, context: ClinicalContext, service: str,
        *, has_integrity_check: bool,
    ) -> ValidationResult:
        """May this tier answer this request? The per-request second line of defence."""
        if self.is_fail_safe(service, context):
            return ValidationResult(False, "Life-critical operations cannot use fallback",
                                    "rule_2_no_fallback_for_life_critical")
        if (tier.method is TierMethod.CACHED_DATA
                and context.operation_type is OperationType.PRESCRIPTIVE):
            return ValidationResult(False, "Prescriptive operations cannot use cached data",
                                    "rule_1_no_cache_for_prescriptive")
        if context.operation_type is OperationType.DIAGNOSTIC:
            if not has_integrity_check:
                return ValidationResult(
                    False, "Diagnostic fallbacks need a data integrity check",
                    "rule_3_diagnostic_requires_validation")
            return ValidationResult(True, "", "rule_3_diagnostic_requires_validation", True)
        return _ALLOWED

    def validate_strategy(self, strategy: FallbackStrategy) -> None:
        """Refuse, at registration, a strategy that some request it serves could not use safely.

        Raises:
            UnsafeStrategyError: naming the strategy, the tier and the rule.
        """
        svc = strategy.service
        where = f"strategy {svc!r}"
        if svc in self.critical_services and strategy.tiers:
            raise UnsafeStrategyError(
                "tiers", [t.label for t in strategy.tiers],
                f"must be empty: {svc} is a critical service and never falls back (seed 5.3)",
                source=where)
        if Criticality.LIFE_CRITICAL in strategy.criticalities and strategy.tiers:
            raise UnsafeStrategyError(
                "criticalities", "life_critical",
                "cannot be served by a fallback: life-critical operations fail explicitly",
                source=where)
        for tier in strategy.tiers:
            if (tier.method is TierMethod.CACHED_DATA
                    and OperationType.PRESCRIPTIVE in strategy.operation_types):
                raise UnsafeStrategyError(
                    f"tiers[{tier.priority}].method", tier.method.value,
                    "cannot serve prescriptive operations: they never get cached data",
                    source=where)
        if (OperationType.DIAGNOSTIC in strategy.operation_types and strategy.tiers
                and strategy.integrity_check is None):
            raise UnsafeStrategyError(
                "integrity_check", None,
                "is required: diagnostic answers must pass data integrity validation",
                source=where)
