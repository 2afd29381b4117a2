"""The seed's clinical safety rules (5.1, 5.3), positive and negative cases."""

from __future__ import annotations

import pytest

from healing import (
    CRITICAL_SERVICES,
    ClinicalContext,
    ClinicalSafetyValidator,
    ConfidenceFloor,
    ConfigError,
    FallbackStrategy,
    FallbackStrategyRegistry,
    FallbackTier,
    RecoveryAction,
    TierMethod,
    UnsafeStrategyError,
    default_strategies,
)

V = ClinicalSafetyValidator()
CACHE = FallbackTier(1, TierMethod.CACHED_DATA, max_staleness_s=60)
ALT = FallbackTier(2, TierMethod.ALTERNATIVE_PROVIDER, provider="b")


def ctx(op="informational", crit="medium", **kw):
    return ClinicalContext(op, crit, **kw)


def test_rule_1_prescriptive_never_gets_cache_warm():
    r = V.validate_recovery_action("cache_warm", ctx("prescriptive", "high"))
    assert not r.allowed and r.rule == "rule_1_no_cache_for_prescriptive"
    assert V.validate_recovery_action("cache_warm", ctx("informational")).allowed


def test_rule_1_prescriptive_request_is_refused_a_cached_tier():
    r = V.validate_tier(CACHE, ctx("prescriptive"), "svc", has_integrity_check=True)
    assert not r.allowed and "cached data" in r.reason
    assert V.validate_tier(ALT, ctx("prescriptive"), "svc", has_integrity_check=True).allowed


def test_rule_2_life_critical_never_falls_back():
    r = V.validate_recovery_action(RecoveryAction.FALLBACK, ctx(crit="life_critical"))
    assert not r.allowed and r.rule == "rule_2_no_fallback_for_life_critical"
    assert not V.validate_tier(ALT, ctx(crit="life_critical"), "svc",
                               has_integrity_check=True).allowed
    # Other actions remain possible: alerting about a life-critical failure is essential.
    assert V.validate_recovery_action("alert", ctx(crit="life_critical")).allowed
    assert V.validate_recovery_action("fallback", ctx(crit="high")).allowed


@pytest.mark.parametrize("service", sorted(CRITICAL_SERVICES))
def test_critical_services_never_fall_back_whatever_the_context(service):
    assert V.is_fail_safe(service, ctx("administrative", "low"))
    assert not V.validate_recovery_action("fallback", ctx(crit="low"), service).allowed
    assert not V.validate_tier(ALT, ctx(crit="low"), service, has_integrity_check=True).allowed
    assert "unavailable" in V.guidance_for(service)


def test_rule_3_diagnostic_requires_validation():
    r = V.validate_recovery_action("retry", ctx("diagnostic"))
    assert r.allowed and r.requires_validation
    assert not V.validate_tier(ALT, ctx("diagnostic"), "svc", has_integrity_check=False).allowed
    assert V.validate_tier(ALT, ctx("diagnostic"), "svc",
                           has_integrity_check=True).requires_validation


def test_strategy_serving_cached_data_to_prescriptive_is_refused_at_registration():
    unsafe = FallbackStrategy("meds", (CACHE,), operation_types=frozenset({"prescriptive"}))
    reg = FallbackStrategyRegistry(V)
    with pytest.raises(UnsafeStrategyError, match="prescriptive") as err:
        reg.register(unsafe)
    assert err.value.field == "tiers[1].method" and "meds" in str(err.value)
    assert reg.get("meds") is None


def test_strategy_for_a_critical_service_is_refused_at_registration():
    with pytest.raises(UnsafeStrategyError, match="critical service"):
        FallbackStrategyRegistry(V).register(FallbackStrategy("emergency_triage", (ALT,)))


def test_strategy_vetted_for_life_critical_requests_is_refused():
    s = FallbackStrategy("x", (ALT,), criticalities=frozenset({"life_critical", "high"}))
    with pytest.raises(UnsafeStrategyError, match="life-critical"):
        FallbackStrategyRegistry(V).register(s)


def test_diagnostic_strategy_without_integrity_check_is_refused():
    s = FallbackStrategy("dx", (ALT,), operation_types=frozenset({"diagnostic"}))
    with pytest.raises(UnsafeStrategyError, match="integrity"):
        FallbackStrategyRegistry(V).register(s)
    FallbackStrategyRegistry(V).register(
        FallbackStrategy("dx", (ALT,), ConfidenceFloor(0.7),
                         operation_types=frozenset({"diagnostic"})))


def test_the_seed_default_strategies_pass_every_rule():
    reg = FallbackStrategyRegistry(V, default_strategies())
    assert reg.services() == ["care_locator", "clinical_reasoning", "pharmaguard",
                              "xray_analysis"]
    pharmaguard = reg.get("pharmaguard")
    assert all(t.method is not TierMethod.CACHED_DATA for t in pharmaguard.tiers)


def test_context_repr_and_description_never_show_identifiers():
    c = ctx("diagnostic", "high", patient_id="MRN-778812", clinician_id="DR-1")
    assert "MRN-778812" not in repr(c) and "DR-1" not in repr(c)
    assert "MRN-778812" not in str(c.describe()) and c.describe()["has_patient"] is True


@pytest.mark.parametrize("kwargs,field", [({"operation_type": "surgical"}, "operation_type"),
                                          ({"criticality": "urgent"}, "criticality"),
                                          ({"patient_id": ""}, "patient_id")])
def test_context_validates_its_fields(kwargs, field):
    with pytest.raises(ConfigError) as err:
        ClinicalContext(**kwargs)
    assert err.value.field == field


@pytest.mark.parametrize("kwargs,field", [
    ({"priority": 1, "method": "carrier_pigeon"}, "method"),
    ({"priority": 1, "method": "cached_data"}, "max_staleness_s"),
    ({"priority": 1, "method": "alternative_provider"}, "provider"),
    ({"priority": 1, "method": "static_fallback"}, "response"),
    ({"priority": 0, "method": "static_fallback", "response": {}}, "priority"),
    ({"priority": 1, "method": "static_fallback", "response": {}, "max_staleness_s": 5},
     "max_staleness_s"),
])
def test_tier_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        FallbackTier(**kwargs)
    assert err.value.field == field
