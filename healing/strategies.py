"""The seed's four fallback strategies (2.2), shipped as defaults.

Two deliberate departures from the seed's text, both for safety:

* ``pharmaguard``: the seed's static tier answers ``{warning: ...}``, which fails the seed's
  own integrity check (``result.interactions !== undefined``), and an answer without
  interactions could be read as "no interactions". Drug-interaction checking therefore fails
  explicitly when its alternative provider fails, carrying the seed's warning as guidance.
* ``xray_analysis``: the seed gives it no integrity check, but it serves diagnostic
  requests and rule 3 requires one; it accepts confident findings or an explicit
  "queued for manual review" answer, which is what its degraded tier returns.
"""

from __future__ import annotations

from .config import FallbackTier, TierMethod
from .fallback import FallbackStrategy
from .integrity import AllOf, AnyOf, ConfidenceFloor, Predicate, RequiredFields
from .safety import OperationType

__all__ = ["MANUAL_REVIEW_STATUS", "default_strategies"]

_T = TierMethod
_OP = OperationType
MANUAL_REVIEW_STATUS = "queued_for_manual_review"


def _is_manual_review(result: object) -> bool:
    return isinstance(result, dict) and result.get("status") == MANUAL_REVIEW_STATUS


def default_strategies() -> list[FallbackStrategy]:
    """Fresh copies of the default strategies (each call builds new objects)."""
    return [
        FallbackStrategy(
            service="clinical_reasoning",
            tiers=(
                FallbackTier(1, _T.ALTERNATIVE_PROVIDER, provider="deepseek"),
                FallbackTier(2, _T.CACHED_DATA, max_staleness_s=300.0, stale_data_warning=True),
                FallbackTier(3, _T.DEGRADED_MODE, handler="rule_based_engine",
                             warning="Degraded mode: rule-based engine, not the AI model."),
            ),
            integrity_check=ConfidenceFloor(0.7),
            stale_data_warning=True,
            operation_types=frozenset({_OP.DIAGNOSTIC, _OP.INFORMATIONAL}),
            description="AI diagnostic reasoning",
        ),
        FallbackStrategy(
            service="pharmaguard",
            tiers=(FallbackTier(1, _T.ALTERNATIVE_PROVIDER, provider="local_database"),),
            integrity_check=AllOf(
                RequiredFields("interactions"),
                Predicate(lambda r: isinstance(r["interactions"], list), "interactions is a list"),
            ),
            operation_types=frozenset({_OP.PRESCRIPTIVE, _OP.INFORMATIONAL}),
            description="drug interaction checking: no cached data, ever",
        ),
        FallbackStrategy(
            service="xray_analysis",
            tiers=(
                FallbackTier(1, _T.ALTERNATIVE_PROVIDER, provider="gemini:flash"),
                FallbackTier(2, _T.CACHED_DATA, max_staleness_s=600.0, stale_data_warning=True),
                FallbackTier(3, _T.DEGRADED_MODE, response={
                    "status": MANUAL_REVIEW_STATUS,
                    "message": "AI analysis unavailable. Image queued for manual review.",
                }, warning="AI analysis unavailable. Image queued for manual review."),
            ),
            integrity_check=AnyOf(
                AllOf(RequiredFields("findings"), ConfidenceFloor(0.7)),
                Predicate(_is_manual_review, "queued for manual review"),
            ),
            stale_data_warning=True,
            operation_types=frozenset({_OP.DIAGNOSTIC, _OP.INFORMATIONAL}),
            description="medical imaging analysis",
        ),
        FallbackStrategy(
            service="care_locator",
            tiers=(
                FallbackTier(1, _T.CACHED_DATA, max_staleness_s=3600.0),
                FallbackTier(2, _T.STATIC_FALLBACK, response={
                    "message": "Service temporarily unavailable. Please try again later.",
                }, warning="Service temporarily unavailable. Please try again later."),
            ),
            operation_types=frozenset({_OP.INFORMATIONAL, _OP.ADMINISTRATIVE}),
            description="non-critical: care locator, scheduling",
        ),
    ]
